"""Hand-written SQL for the consent-check hot path, one reader per database.

Why not the ORM: a check is one indexed lookup; the ORM's query building and model instantiation cost more than the
lookup itself (bench/check_bench.py prints the figures). Two choices measured there:

- SQLite: a private read-only `sqlite3` connection used synchronously on the event loop for single checks. An
  indexed lookup takes microseconds, less than aiosqlite's hop to its worker thread, and WAL lets it read while the
  writer writes. Bulk reads (batch, stream) run on two worker threads with a read-only connection each, as one
  aggregate query per part of at most 5,000 keys, so that SQLite works on the other core while Python writes.
- PostgreSQL: a dedicated asyncpg pool with prepared statements; concurrent single checks that arrive in the same
  event-loop turn are coalesced into one round trip (`unnest` of the keys), so 50 waiting callers cost one query,
  not 50. Every answer still comes from the database at the time of the query: nothing is cached.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import queue
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypeVar

import orjson

from server.consent import read_model
from server.consent.decide import StateView, SubjectFlags
from server.indexes import CHECK_STATE_INDEX, CHECK_SUBJECT_INDEX

if TYPE_CHECKING:  # imported where a pool is made: the SQLite stream worker processes never need it (~14 MB)
    import asyncpg

    from server.pgpool import BoundedPool

Key = tuple[str, str, str]  # (ref, purpose, channel)
T = TypeVar("T")
# What the bulk path reads per known subject, instants as UTC text (`isoformat(" ")`, as SQLite stores them): erased_at,
# restricted_at, status, since, valid_until, policy_version_id, event_id. A list on SQLite (decoded from JSON), a tuple
# on PostgreSQL.
Row = Sequence[Any]


class Lookup(NamedTuple):
    """What the database knows about one subject x purpose x channel: None subject means unknown ref."""

    subject: SubjectFlags | None
    state: StateView | None


UNKNOWN = Lookup(None, None)


class StateReader(Protocol):
    dialect: str

    async def current(self, keys: Sequence[Key]) -> list[Lookup]: ...

    async def at(self, key: Key, at: datetime) -> Lookup: ...

    async def rows(self, keys: Sequence[Key]) -> list[Row | None]: ...

    def stream(self, sql: str, params: Sequence[Any], chunk: int) -> AsyncIterator[list[tuple[Any, ...]]]: ...

    async def close(self) -> None: ...


_SQLITE_ONE = f"""
SELECT s.erased_at, s.restricted_at, c.status, c.since, c.valid_until, c.policy_version_id, c.event_id
FROM subjects s INDEXED BY {CHECK_SUBJECT_INDEX} LEFT JOIN consent_states c INDEXED BY {CHECK_STATE_INDEX}
  ON c.subject_id = s.id AND c.purpose_id = ? AND c.channel_id = ?
WHERE s.ref = ?"""

_SQLITE_SUBJECT = f"SELECT id, erased_at, restricted_at FROM subjects INDEXED BY {CHECK_SUBJECT_INDEX} WHERE ref = ?"
_SQLITE_BATCH = 5000  # keys per bulk read on a worker thread (a batch of 10,000 is two reads at once)
# The keys are grouped by purpose x channel (`_by_pair`) and read in ONE statement: a UNION ALL branch per pair, each
# taking its refs as one flat JSON array and its purpose and channel as parameters. What comes out is ONE row: a JSON
# array holding [branch, index in the branch's refs, erased_at, restricted_at, status, since, valid_until,
# policy_version_id, event_id] per known subject (an absent index is an unknown ref), instants as stored. One
# sqlite3_step computes it all, and Python's sqlite3 releases the GIL for the whole step, so the bulk read runs on the
# other core while the event loop goes on. Each GIL round trip counts, so a read is one statement with one row, not
# a row a key nor a statement a pair; flat refs with the pair as a parameter spare three json_extract calls a key
# (bench/README.md, "The SQLite bulk read: one statement, one row").
_UNION_MAX = 32  # branches per statement (SQLite allows 500 terms in a compound SELECT)
_SQLITE_BRANCH = """SELECT json_array({branch}, k.key, s.erased_at, s.restricted_at, c.status, c.since, c.valid_until,
                  c.policy_version_id, c.event_id) AS found
FROM json_each(?{refs}) k
JOIN subjects s INDEXED BY {subject_index} ON s.ref = k.value
LEFT JOIN consent_states c INDEXED BY {state_index}
  ON c.subject_id = s.id AND c.purpose_id = ?{purpose} AND c.channel_id = ?{channel}"""


@functools.cache
def _sqlite_rows_sql(branches: int) -> str:
    """The bulk read for `branches` pairs; parameters: refs (JSON array), purpose, channel for each pair in turn."""
    union = "\nUNION ALL\n".join(
        _SQLITE_BRANCH.format(
            branch=i,
            refs=3 * i + 1,
            purpose=3 * i + 2,
            channel=3 * i + 3,
            subject_index=CHECK_SUBJECT_INDEX,
            state_index=CHECK_STATE_INDEX,
        )
        for i in range(branches)
    )
    # group_concat, not json_group_array: the latter would parse each branch's array again.
    return f"SELECT '[' || coalesce(group_concat(found), '') || ']' FROM ({union})"


def _ts(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


def _lookup(row: Row | None) -> Lookup:
    """A bulk-read row (either dialect) as what `decide` takes."""
    if row is None:
        return UNKNOWN
    erased, restricted, status, since, valid_until, policy_id, event_id = row
    flags = SubjectFlags(_ts(erased), _ts(restricted))
    if status is None:
        return Lookup(flags, None)
    return Lookup(flags, StateView(status, since_of(since), _ts(valid_until), policy_id, event_id))


def since_of(value: Any) -> datetime:
    parsed = _ts(value)
    if parsed is None:
        raise ValueError("a consent state without a `since` instant")
    return parsed


# Page caches: 64 MiB for the single-check connection, 32 MiB for each bulk one; the OS page cache holds the file in
# any case. The bulk connections also read the file through mmap (BULK_MMAP_MB, setting SQLITE_BULK_MMAP_MB): the two
# check indexes of 100,000 subjects take ~96 MB, more than a bulk cache holds, and a page that misses the cache then
# costs a read() and a copy. On two threads, a mapped bulk read costs 3.4 us of CPU a key against 5.5 through read()
# (bench/README.md, "SQLite bulk reads through mmap"). The mapped pages are the kernel's page cache, not copies: they
# count in the process's RSS as file-backed pages, up to min(file size, BULK_MMAP_MB) for each of the two connections
# (and for each stream worker process, server.consent.stream_workers), whatever is streamed.
# A mapped file truncated under the server (a VACUUM or a restore by another process) would raise SIGBUS: README.
SINGLE_CACHE_KIB = 65536
BULK_CACHE_KIB = 32768
BULK_MMAP_MB = 1024


class SqliteStateReader:
    """Single checks synchronous on a read-only connection (microseconds each); bulk reads on worker threads with
    their own read-only connections (see module docstring)."""

    dialect = "sqlite"

    def __init__(self, path: str, bulk_threads: int = 2, bulk_mmap_mb: int = BULK_MMAP_MB) -> None:
        self.path = path
        self.bulk_mmap_mb = bulk_mmap_mb
        self._conn = read_only_connection(path, SINGLE_CACHE_KIB)
        # One connection per worker thread: a task takes a free one and gives it back (never waits: as many
        # connections as threads).
        self._bulk_conns: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        for _ in range(bulk_threads):
            self._bulk_conns.put(read_only_connection(path, BULK_CACHE_KIB, bulk_mmap_mb))
        self._bulk_threads = bulk_threads
        self._bulk = ThreadPoolExecutor(bulk_threads, thread_name_prefix="sqlite-bulk-read")

    def _one(self, key: Key) -> Lookup:
        ref, purpose, channel = key
        return _lookup(self._conn.execute(_SQLITE_ONE, (purpose, channel, ref)).fetchone())

    async def current(self, keys: Sequence[Key]) -> list[Lookup]:
        if len(keys) <= 8:
            return [self._one(key) for key in keys]
        return self._many(keys)

    def _many(self, keys: Sequence[Key]) -> list[Lookup]:
        """One query for the whole batch, not every state row of each subject: 6 against 19 ms per 1,000 keys
        (bench/README.md, "The SQLite bulk read: one statement, one row")."""
        return [_lookup(row) for row in sqlite_rows(self._conn, keys)]

    async def rows(self, keys: Sequence[Key]) -> list[Row | None]:
        """The bulk read, on the worker threads, each with its own connection (see _SQLITE_BRANCH), so that SQLite
        reads on the other core while the event loop goes on (bench/README.md, "The SQLite bulk read: one statement,
        one row"). A large read is split between the threads (a batch of 10,000 keys: two parts of 5,000 read at
        once)."""
        loop = asyncio.get_running_loop()
        part = min(_SQLITE_BATCH, max(1000, -(-len(keys) // self._bulk_threads)))
        if len(keys) <= part:
            return await loop.run_in_executor(self._bulk, self._read_bulk, keys)
        parts = [keys[start : start + part] for start in range(0, len(keys), part)]
        results: list[Row | None] = []
        for found in await asyncio.gather(*(loop.run_in_executor(self._bulk, self._read_bulk, p) for p in parts)):
            results.extend(found)
        return results

    def _read_bulk(self, keys: Sequence[Key]) -> list[Row | None]:
        conn = self._bulk_conns.get()
        try:
            return sqlite_rows(conn, keys)
        finally:
            self._bulk_conns.put(conn)

    async def at(self, key: Key, at: datetime) -> Lookup:
        ref, purpose, channel = key
        subject = self._conn.execute(_SQLITE_SUBJECT, (ref,)).fetchone()
        if subject is None:
            return UNKNOWN
        subject_id, erased, restricted = subject
        flags = SubjectFlags(_ts(erased), _ts(restricted))
        # Events are stored with Tortoise's text form; compare as datetimes, newest first, stop at the first <= at.
        rows = self._conn.execute(
            "SELECT status, recorded_at, valid_until, policy_version_id, id FROM consent_events "
            "WHERE subject_id = ? AND purpose_id = ? AND channel_id = ? ORDER BY seq DESC",
            (subject_id, purpose, channel),
        )
        for status, recorded_at, valid_until, policy_id, event_id in rows:
            recorded = _ts(recorded_at)
            assert recorded is not None
            if recorded <= at:
                return Lookup(flags, StateView(status, recorded, _ts(valid_until), policy_id, str(event_id)))
        return Lookup(flags, None)

    async def stream(self, sql: str, params: Sequence[Any], chunk: int) -> AsyncIterator[list[tuple[Any, ...]]]:
        """Rows in chunks; the loop is yielded between chunks so other requests are served meanwhile."""
        cursor = self._conn.execute(sql, list(params))
        try:
            while rows := cursor.fetchmany(chunk):
                yield rows
                await asyncio.sleep(0)
        finally:
            cursor.close()

    async def close(self) -> None:
        self._bulk.shutdown(wait=True)
        for _ in range(self._bulk_threads):
            self._bulk_conns.get_nowait().close()
        self._conn.close()


def read_only_connection(path: str, cache_kib: int, mmap_mb: int = 0) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA query_only = 1")
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute(f"PRAGMA cache_size = -{cache_kib}")
    conn.execute(f"PRAGMA mmap_size = {mmap_mb * 1024 * 1024}")
    return conn


def sqlite_rows(conn: sqlite3.Connection, keys: Sequence[Key]) -> list[Row | None]:
    results: list[Row | None] = [None] * len(keys)
    groups = list(_by_pair(keys).items())
    for start in range(0, len(groups), _UNION_MAX):
        part = groups[start : start + _UNION_MAX]
        params: list[Any] = []
        positions: list[list[int]] = []  # per branch, the position in `keys` of each of its refs
        for (purpose, channel), (key_positions, refs) in part:
            params += (orjson.dumps(refs), purpose, channel)
            positions.append(key_positions)
        (found,) = conn.execute(_sqlite_rows_sql(len(part)), params).fetchone()
        for branch, index, *row in orjson.loads(found):
            results[positions[branch][index]] = row
    return results


def _by_pair(keys: Sequence[Key]) -> dict[tuple[str, str], tuple[list[int], list[str]]]:
    """The keys grouped by purpose x channel: for each pair, the keys' positions and their refs, in key order."""
    groups: dict[tuple[str, str], tuple[list[int], list[str]]] = {}
    for position, (ref, purpose, channel) in enumerate(keys):
        group = groups.get((purpose, channel))
        if group is None:
            group = groups[(purpose, channel)] = ([], [])
        group[0].append(position)
        group[1].append(ref)
    return groups


# The keys go in as two texts split by PostgreSQL: the refs joined by the unit separator (U+001F), and the keys of
# their pairs in the read model (`read_model.key`: purpose, U+001F, channel) joined by the record separator (U+001E).
# Texts, not three text[] parameters, whose encoding costs asyncpg six `isinstance` calls a key in Python; the pairs'
# keys built here, not by PostgreSQL from purpose and channel, which costs backend CPU a key (bench/README.md,
# "PostgreSQL bulk read: keys in as texts, answers out as one text"). Questions never hold a control character
# (`validate_question`); `postgres_rows` checks anyway.
# One probe a key: the subject's row by ref (through the hash index `read_model.REF_INDEX`, which the refs compared
# COLLATE "C" select) holds its flags and, in `check_states`, every one of its states (server.consent.read_model).
# The answer is ONE text for all the keys, decoded by one `orjson.loads`: a JSON value per key, in key order (`k.i`;
# refs are unique, so exactly one row a key):
#   null                      no such subject
#   [status, since, valid_until, policy_version_id, event_id]   the pair's state, the subject neither erased nor
#                             restricted (the common case)
#   []                        no state for the pair, no flag
#   [erased_at, restricted_at, state or null]                 a subject with a flag
# Instants are UTC text (read_model). One text, not a record a key: asyncpg's decoding of five columns a row and the
# loop over the records would cost the client twice the CPU a key (bench/README.md, "PostgreSQL bulk read: keys in
# as texts, answers out as one text").
_PG_SEPARATOR = "\x1f"
_PG_PAIR_SEPARATOR = "\x1e"
_PG_STATE = f"s.{read_model.COLUMN} -> k.pair"
_PG_VALUE = f"""CASE WHEN s.id IS NULL THEN 'null'
       WHEN s.erased_at IS NULL AND s.restricted_at IS NULL THEN coalesce(({_PG_STATE})::text, '[]')
       ELSE jsonb_build_array(consent_instant_text(s.erased_at), consent_instant_text(s.restricted_at),
                              {_PG_STATE})::text
  END"""
_PG_KEYS = """FROM unnest(string_to_array($1, E'\\x1f'), string_to_array($2, E'\\x1e'))
     WITH ORDINALITY AS k(ref, pair, i)
LEFT JOIN subjects s ON s.ref = k.ref COLLATE "C"
"""
# The values in the order the join gives them, and beside them the keys' positions (`k.i`) in the same order: one
# aggregate node feeds both aggregates the same rows in the same sequence. The join walks the keys in order (a nested
# loop over `unnest`), so the positions read "1,2,...,n" and the values are in key order; SQL does not promise that
# order, and `postgres_rows` reads the keys again with `_PG_MANY_ORDERED` whenever the positions say otherwise.
# Without an ORDER BY, PostgreSQL sorts nothing: backend CPU 3.9 against 4.75 us a key (bench/README.md,
# "PostgreSQL bulk read: keys in as texts, answers out as one text").
_PG_MANY = f"SELECT string_agg({_PG_VALUE}, ','), string_agg(k.i::text, ',')\n{_PG_KEYS}"
_PG_MANY_ORDERED = f"SELECT string_agg({_PG_VALUE}, ',' ORDER BY k.i)\n{_PG_KEYS}"
_NO_STATE = (None, None, None, None, None)
_NO_STATE_NO_FLAG = (None, None, *_NO_STATE)
PG_PART = 2500
_PG_AT = """
SELECT s.erased_at, s.restricted_at, e.status, e.recorded_at, e.valid_until, e.policy_version_id, e.id::text
FROM subjects s LEFT JOIN LATERAL (
  SELECT status, recorded_at, valid_until, policy_version_id, id FROM consent_events
  WHERE subject_id = s.id AND purpose_id = $2 AND channel_id = $3 AND recorded_at <= $4
  ORDER BY seq DESC LIMIT 1) e ON true
WHERE s.ref = $1"""


async def _session_kept(connection: asyncpg.Connection) -> None:
    """The pool's reset of a connection given back: nothing to send. asyncpg's default sends a reset query (advisory
    locks, cursors, LISTEN, session settings) at every release, a round trip per chunk of a stream and per batch of
    coalesced single checks; this reader takes no advisory lock, listens to nothing, sets nothing after connecting
    and closes its cursors with their transactions. asyncpg still rolls back a transaction left open before this is
    called. One round trip less a chunk: some 7 % more checks/s on a stream (bench/README.md, "PostgreSQL bulk
    read: keys in as texts, answers out as one text")."""


class PostgresStateReader:
    """asyncpg with prepared statements; concurrent lookups coalesced into one `unnest` query per loop turn."""

    dialect = "postgres"

    def __init__(
        self, pool: asyncpg.Pool | BoundedPool, max_batch: int = 500, answer_timeout_s: float | None = None
    ) -> None:
        """`answer_timeout_s`: the longest a single check's read (coalesced or `at`) waits for PostgreSQL's answer,
        on each of its two attempts (`_read`); None: no limit. Bulk reads (batches, streams) have none."""
        from server.db import is_unavailable_error  # here: server.db imports asyncpg (see the TYPE_CHECKING import)

        self._pool = pool
        self._lost = is_unavailable_error
        self._max_batch = max_batch
        self._answer_timeout_s = answer_timeout_s
        self._pending: list[tuple[Key, asyncio.Future[Lookup]]] = []
        self._flush_scheduled = False

    @classmethod
    async def connect(
        cls, dsn: str, max_size: int = 8, search_path: str | None = None, acquire_timeout_s: float = 5.0
    ) -> PostgresStateReader:
        """A pool whose wait for a connection (and a new one's handshake) lasts at most `acquire_timeout_s`
        (`server.pgpool`): a hung or exhausted PostgreSQL is then a 503, not a check that waits for ever."""
        from server.pgpool import bounded_pool  # here, not at the top: see the TYPE_CHECKING import

        settings = {"search_path": search_path} if search_path else None
        pool = await bounded_pool(
            dsn,
            acquire_timeout=acquire_timeout_s,
            min_size=1,
            max_size=max_size,
            server_settings=settings,
            reset=_session_kept,
        )
        return cls(pool, answer_timeout_s=acquire_timeout_s)

    async def current(self, keys: Sequence[Key]) -> list[Lookup]:
        if len(keys) != 1:
            return await self._query(keys)
        future: asyncio.Future[Lookup] = asyncio.get_running_loop().create_future()
        self._pending.append((keys[0], future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        return [await future]

    def _flush(self) -> None:
        self._flush_scheduled = False
        pending, self._pending = self._pending, []
        for start in range(0, len(pending), self._max_batch):
            asyncio.get_running_loop().create_task(self._resolve(pending[start : start + self._max_batch]))

    async def _resolve(self, batch: list[tuple[Key, asyncio.Future[Lookup]]]) -> None:
        try:
            keys = [key for key, _ in batch]
            rows = await self._read(lambda conn: postgres_rows(conn, keys), self._answer_timeout_s)
            results = [_lookup(row) for row in rows]
        except Exception as exc:  # every waiter gets the failure, none is left hanging
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def rows(self, keys: Sequence[Key]) -> list[Row | None]:
        """Large reads are split into parts of `PG_PART` keys queried at once on several pool connections, so
        PostgreSQL works on them in several backends (bench/README.md, "PostgreSQL bulk read: keys in as texts,
        answers out as one text")."""
        parts = [keys[start : start + PG_PART] for start in range(0, len(keys), PG_PART)]
        results: list[Row | None] = []
        for part in await asyncio.gather(*(self._fetch(part) for part in parts)):
            results.extend(part)
        return results

    async def _fetch(self, keys: Sequence[Key]) -> list[Row | None]:
        return await self._read(lambda conn: postgres_rows(conn, keys))

    async def _read(self, work: Callable[[asyncpg.Connection], Awaitable[T]], timeout_s: float | None = None) -> T:
        """`work` on a pool connection; once more on a fresh one when the connection turned out lost (a backend
        terminated, PostgreSQL restarted): a read changes nothing, so it is safe to send again. A lost connection
        is terminated before it goes back, so that the pool opens a new one: this pool's reset sends nothing
        (`_session_kept`), so a connection whose backend is gone would otherwise be handed out again and again.
        A second failure is raised (the app answers 503, `server.db.send_again_error`). Past `timeout_s` without an
        answer (a PostgreSQL or a network that went mute: the socket stays open, nothing comes back) the connection
        counts as lost (`TimeoutError`)."""
        for attempt in (1, 2):
            try:
                async with self._pool.acquire() as conn:
                    try:
                        return await asyncio.wait_for(work(conn), timeout_s)
                    except Exception as exc:
                        if self._lost(exc):
                            # A connection already closed is detached from the pool, and refuses even this.
                            with contextlib.suppress(Exception):
                                conn.terminate()
                        raise
            except Exception as exc:
                # Lost in the read, or in giving the connection back: asyncpg releases a connection itself when its
                # socket closes, and the release that follows is then refused ("a free connection holder").
                if attempt == 2 or not self._lost(exc):
                    raise
        raise AssertionError("unreachable")

    async def _query(self, keys: Sequence[Key]) -> list[Lookup]:
        return [_lookup(row) for row in await self._fetch(keys)]

    async def at(self, key: Key, at: datetime) -> Lookup:
        row = await self._read(lambda conn: conn.fetchrow(_PG_AT, key[0], key[1], key[2], at), self._answer_timeout_s)
        if row is None:
            return UNKNOWN
        erased, restricted, status, recorded_at, valid_until, policy_id, event_id = row
        flags = SubjectFlags(erased, restricted)
        if status is None:
            return Lookup(flags, None)
        return Lookup(flags, StateView(status, recorded_at, valid_until, policy_id, event_id))

    async def stream(self, sql: str, params: Sequence[Any], chunk: int) -> AsyncIterator[list[tuple[Any, ...]]]:
        """Rows in chunks from a server-side cursor (constant memory whatever the result size), one chunk ahead:
        PostgreSQL computes the next chunk while the caller works on this one (bench/README.md, "Where an audience
        export's time goes")."""
        async with self._pool.acquire() as conn, conn.transaction(readonly=True):
            cursor = await conn.cursor(sql, *params)
            pending = asyncio.ensure_future(cursor.fetch(chunk))
            try:
                while rows := await pending:
                    pending = asyncio.ensure_future(cursor.fetch(chunk))
                    await asyncio.sleep(0)  # the next fetch goes out before the caller works on this chunk
                    yield [tuple(row) for row in rows]
            finally:
                # The caller may stop early: the connection goes back to the pool only once its fetch has ended.
                with contextlib.suppress(Exception):
                    await pending

    async def close(self) -> None:
        await self._pool.close()


async def postgres_rows(conn: asyncpg.Connection, keys: Sequence[Key]) -> list[Row | None]:
    """The bulk read of `keys` on one connection (`_PG_MANY`): the reader's pool and the stream worker processes
    (server.consent.stream_workers) read with it."""
    if not keys:
        return []
    fields = key_texts(keys)
    found, order = await conn.fetchrow(_PG_MANY, *fields)
    if order != _positions(len(keys)):
        found = await conn.fetchval(_PG_MANY_ORDERED, *fields)
    values = orjson.loads(f"[{found}]")
    if len(values) != len(keys):
        raise RuntimeError(f"{len(keys)} keys read, {len(values)} answers")
    results: list[Row | None] = []
    append = results.append
    for value in values:
        if value is None or len(value) == 5:  # unknown subject; a state and no flag
            append(value if value is None else (None, None, *value))
        elif not value:
            append(_NO_STATE_NO_FLAG)
        else:
            erased, restricted, state = value
            append((erased, restricted, *(state or _NO_STATE)))
    return results


@functools.lru_cache(maxsize=8)
def _positions(count: int) -> str:
    """The positions of `count` keys in key order, as `_PG_MANY` writes them: "1,2,...,count"."""
    return ",".join(map(str, range(1, count + 1)))


def key_texts(keys: Sequence[Key]) -> tuple[str, str]:
    """The parameters of `_PG_MANY` for `keys`: the refs joined by U+001F, the pairs' keys in the read model
    (`read_model.key`) joined by U+001E."""
    refs, purposes, channels = zip(*keys, strict=True)
    pairs = _PG_PAIR_SEPARATOR.join(map(read_model.SEPARATOR.join, zip(purposes, channels, strict=True)))
    texts = (_PG_SEPARATOR.join(refs), pairs)
    count = len(keys)
    if (texts[0].count(_PG_SEPARATOR), pairs.count(_PG_PAIR_SEPARATOR), pairs.count(read_model.SEPARATOR)) != (
        count - 1,
        count - 1,
        count,
    ):
        raise ValueError("a consent-check key holds U+001E or U+001F")  # validate_question rules them out
    return texts
