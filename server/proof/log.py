"""The transparency log: a sequencer gives committed events consecutive positions, the Merkle tree over their
hashes grows incrementally, and signed checkpoints state its size and root.

Several app processes may run: on PostgreSQL the sequencer holds a transaction-level advisory lock, so positions
stay consecutive and no event is sequenced twice; SQLite has a single writer, whose lock the sequencer takes before
it reads. The server signs checkpoints in one process at a time (a background job, server.leases). Events enter
`log_queue` in the transaction that records them, so an event is either committed and queued, or neither.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from typing import Any, cast

import asyncpg
import rfc8785
from joserfc import jws
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from server.auth.keys import ALGORITHM, KeyStore
from server.db import connection, is_postgres, placeholders
from server.models import Checkpoint, LogIdentity, MerkleNode
from server.proof import merkle

ADVISORY_LOCK_KEY = 0x636F6E73  # "cons"
BATCH = 50_000
# Interior nodes are stored from this level up. A lower node covers at most 8 leaves, and is recomputed from them
# when a proof needs it: storing levels 1-3 would add 7 rows per 8 events to the sequencer's writes.
STORED_FROM_LEVEL = 4
CHECKPOINT_TYP = "consent-checkpoint+json"
IDENTITY_ROW = 1
log = logging.getLogger("server.proof")


@dataclass(frozen=True)
class SignedCheckpoint:
    log_id: str  # as signed in the checkpoint's payload
    tree_size: int
    root_hash: str
    timestamp: datetime
    jws: str

    def as_json(self) -> dict[str, Any]:
        return {
            "log_id": self.log_id,
            "tree_size": self.tree_size,
            "root_hash": self.root_hash,
            "timestamp": checkpoint_time(self.timestamp),
            "signature": self.jws,
        }


def checkpoint_time(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def checkpoint_payload(log_id: str, tree_size: int, root_hash: str, timestamp: datetime) -> bytes:
    """The signed bytes: RFC 8785 JSON of {log_id, tree_size, root_hash, timestamp}."""
    return rfc8785.dumps(
        {"log_id": log_id, "tree_size": tree_size, "root_hash": root_hash, "timestamp": checkpoint_time(timestamp)}
    )


def signed_log_id(token: str) -> str | None:
    """The `log_id` a checkpoint's compact JWS states, read without checking the signature (`ledger verify` checks
    it); None when the token has no such payload."""
    try:
        payload = token.split(".")[1]
        value = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))).get("log_id")
    except (IndexError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Identity:
    """The log's stored id (`server.models.LogIdentity`), or the one it would adopt when none is stored yet."""

    log_id: str
    source: str  # "public_url" or "checkpoints"
    adopted_at: datetime | None  # None: not stored yet


async def read_identity(default_id: str) -> Identity:
    """The stored id; without one, the id of the first signed checkpoint, or `default_id` (PUBLIC_URL) for a log
    that never signed one. Writes nothing (`ledger verify` may run on a copy)."""
    row = await LogIdentity.get_or_none(id=IDENTITY_ROW)
    if row is not None:
        return Identity(row.log_id, row.source, row.adopted_at)
    first = await Checkpoint.all().order_by("tree_size").first()
    signed = signed_log_id(first.jws) if first is not None else None
    return Identity(signed, "checkpoints", None) if signed else Identity(default_id, "public_url", None)


class TransparencyLog:
    def __init__(self, keys: KeyStore, default_id: str, clock: Callable[[], datetime]) -> None:
        """`default_id`: the id a new log takes (PUBLIC_URL); an existing log keeps the one it stored."""
        self.keys = keys
        self.default_id = default_id
        self.clock = clock
        self._log_id: str | None = None

    async def identity(self) -> str:
        """The log's id, fixed when the log was created: read from the database once a process (the server's start
        calls it), stored there by the first process that finds none. A database whose checkpoints were signed
        before the id was stored keeps the id they carry, so a PUBLIC_URL changed since leaves them valid."""
        if self._log_id is None:
            found = await read_identity(self.default_id)
            if found.adopted_at is None:
                found = await _store_identity(found, self.clock())
            elif found.log_id != self.default_id:
                log.info("transparency log id %r kept (PUBLIC_URL is now %r)", found.log_id, self.default_id)
            self._log_id = found.log_id
        return self._log_id

    async def sequence(self) -> int:
        """Give every queued event a log position, in queue order (the order the recording transactions queued
        them). Returns the tree size."""
        while True:
            async with in_transaction() as conn:
                await _lock_log(conn)
                size = await _size(conn)
                rows = await _take_batch(conn)
                if not rows:
                    return size
                await self._append(conn, size, rows)

    async def _append(self, conn: BaseDBAsyncClient, size: int, rows: Sequence[Any]) -> None:
        """Leaves go to log_entries (their hash is the level-0 node), interior nodes to merkle_nodes, in bulk,
        since a first checkpoint over an existing ledger inserts millions of rows."""
        entries, nodes = hash_batch(size, rows, await _frontier(conn, size))
        await _insert_rows(conn, "log_entries", ("event_id", "position", "leaf_hash"), entries)
        await _insert_rows(conn, "merkle_nodes", ("level", "index", "hash"), nodes)

    async def checkpoint(self) -> SignedCheckpoint:
        """Sequence what is queued, then sign the tree if it grew since the latest checkpoint."""
        size = await self.sequence()
        log_id = await self.identity()  # before the transaction: it may store the id, on its own connection
        async with in_transaction() as conn:
            await _lock_log(conn)
            latest = await Checkpoint.all().using_db(conn).order_by("-tree_size").first()
            if latest is not None and latest.tree_size >= size:
                return _signed(latest)
            root_hash = (await self.root(size, conn)).hex()
            timestamp = self.clock()
            key = self.keys.active
            token = jws.serialize_compact(
                {"alg": ALGORITHM, "kid": key.kid, "typ": CHECKPOINT_TYP},
                checkpoint_payload(log_id, size, root_hash, timestamp),
                key,
                algorithms=[ALGORITHM],
            )
            row = await Checkpoint.create(
                using_db=conn, tree_size=size, root_hash=root_hash, timestamp=timestamp, jws=token
            )
            return _signed(row)

    async def latest(self) -> SignedCheckpoint | None:
        row = await Checkpoint.all().order_by("-tree_size").first()
        return _signed(row) if row else None

    async def at_size(self, size: int) -> SignedCheckpoint | None:
        row = await Checkpoint.get_or_none(tree_size=size)
        return _signed(row) if row else None

    async def root(self, size: int, conn: BaseDBAsyncClient | None = None) -> bytes:
        return await self._run(lambda node: merkle.root(node, size), conn)

    async def inclusion(self, positions: Iterable[int], size: int) -> dict[int, list[bytes]]:
        wanted = [p for p in positions if p < size]
        return await self._run(lambda node: merkle.inclusion_paths(node, wanted, size))

    async def consistency(self, old_size: int, new_size: int) -> list[bytes]:
        return await self._run(lambda node: merkle.consistency_proof(node, old_size, new_size))

    async def _run(self, work: Callable[[merkle.NodeSource], Any], conn: BaseDBAsyncClient | None = None) -> Any:
        """Plan the node reads, fetch them in one query, then compute."""
        needed = merkle.plan(work)
        nodes = await _fetch_nodes(conn, needed)

        def node(level: int, index: int) -> bytes:
            return nodes[(level, index)]

        return work(node)


async def _lock_log(conn: BaseDBAsyncClient) -> None:
    """Take the log for this transaction before reading it. PostgreSQL: the advisory lock. SQLite: the write lock,
    by a write that changes nothing: a transaction that reads first and writes after fails at once ("database is
    locked", no busy wait) when another process wrote in between, as a second server process does."""
    if is_postgres(conn):
        await conn.execute_query(f"SELECT pg_advisory_xact_lock({ADVISORY_LOCK_KEY})")
    else:
        await conn.execute_query("DELETE FROM log_queue WHERE 0")


async def _size(conn: BaseDBAsyncClient) -> int:
    rows = await conn.execute_query_dict("SELECT MAX(position) AS last FROM log_entries")  # positions are gapless
    last = rows[0]["last"]
    return 0 if last is None else int(last) + 1


async def _frontier(conn: BaseDBAsyncClient, size: int) -> list[bytes]:
    """The roots of the perfect subtrees that make up a tree of `size` leaves, by level (64 slots)."""
    keys = {(level, (size >> level) - 1) for level in range(size.bit_length()) if size >> level & 1}
    frontier = [b""] * 64
    for (level, _), value in (await _fetch_nodes(conn, keys)).items():
        frontier[level] = value
    return frontier


def hash_batch(
    size: int, rows: Iterable[Any], frontier: list[bytes]
) -> tuple[list[tuple[Any, int, str]], list[tuple[int, int, str]]]:
    """Leaf and interior-node rows for queue rows (`event_id`, `event_hash` hex, by name: driver rows or dicts)
    appended to a tree of `size` leaves whose `frontier` (updated in place) is given.

    Returns log_entries rows `(event_id, position, leaf_hash)` sorted by event id (positions stay in queue order,
    only the insert order changes: for the random v4 ids of older ledgers, the unique index is costly to insert
    into at random; v7 ids already come in about this order)
    and merkle_nodes rows `(level, index, hash)` of levels >= STORED_FROM_LEVEL, by level, then index. The hashing
    is `merkle.leaf_hash` and `merkle.node_hash` written out with hashlib: it runs once or twice per event.
    """
    sha256, fromhex = hashlib.sha256, bytes.fromhex
    entries: list[tuple[Any, int, str]] = []
    by_level: list[list[tuple[int, int, str]]] = [[] for _ in range(64)]
    position = size
    for row in rows:
        event_id = row["event_id"]
        current = sha256(b"\x00" + fromhex(row["event_hash"])).digest()
        entries.append((event_id, position, current.hex()))
        level, index = 0, position
        while index & 1:
            current = sha256(b"\x01" + frontier[level] + current).digest()
            level += 1
            index >>= 1
            if level >= STORED_FROM_LEVEL:
                by_level[level].append((level, index, current.hex()))
        frontier[level] = current
        position += 1
    entries.sort()
    return entries, [node for nodes in by_level for node in nodes]


async def _insert_rows(
    conn: BaseDBAsyncClient, table: str, columns: tuple[str, ...], rows: Sequence[tuple[Any, ...]]
) -> None:
    """Bulk insert inside the caller's transaction: COPY on PostgreSQL (asyncpg), executemany otherwise."""
    if not rows:
        return
    if is_postgres(conn):
        async with conn.acquire_connection() as raw:
            if isinstance(raw, asyncpg.Connection):
                await raw.copy_records_to_table(table, records=rows, columns=columns)
                return
    marks = ", ".join(placeholders(conn, len(columns)))
    names = ", ".join(f'"{c}"' for c in columns)
    # Tuples: both drivers take any sequence per row, Tortoise's annotation says lists.
    await conn.execute_many(f'INSERT INTO "{table}" ({names}) VALUES ({marks})', cast(list[list[Any]], rows))


async def _take_batch(conn: BaseDBAsyncClient) -> list[Any]:
    """Remove the next batch from the queue and return its rows (`id`, `event_id` as text, `event_hash`) in queue
    order, with one statement: the rows read are exactly the rows deleted, whatever commits meanwhile.

    The batch is the lowest queue ids this statement sees. Queue order is insertion order; a transaction that
    commits late (PostgreSQL takes sequence values before commit) is simply in a later batch. The queue row carries
    the event hash (copied at record time), so there is no lookup into consent_events. A failure later in the
    transaction rolls the deletion back with everything else.

    PostgreSQL finds the rows by `ctid` (a TID scan) instead of an index descent per id, ~80 ms per 50,000 rows in
    `EXPLAIN ANALYZE`, with no separate read (bench/README.md, "Where a first checkpoint's time goes"). The rows
    cannot move within the statement: queue rows are never updated, and only the sequencer, under its advisory
    lock, deletes them.
    """
    rows: Sequence[Any]
    if is_postgres(conn):
        # On the transaction's asyncpg connection: Tortoise's execute_query runs a DELETE without fetching its rows.
        async with conn.acquire_connection() as raw:
            rows = await raw.fetch(
                "DELETE FROM log_queue WHERE ctid = ANY(ARRAY("
                f"SELECT ctid FROM log_queue ORDER BY id LIMIT {BATCH})) "
                "RETURNING id, CAST(event_id AS TEXT) AS event_id, event_hash"
            )
    else:
        # SQLite: a DELETE takes the write lock even when it finds nothing, so the probe keeps an idle tick to a
        # read. There is no DML in a WITH clause.
        _, probe = await conn.execute_query("SELECT 1 FROM log_queue LIMIT 1")
        if not probe:
            return []
        _, rows = await conn.execute_query(
            "DELETE FROM log_queue WHERE id IN "
            f"(SELECT id FROM log_queue ORDER BY id LIMIT {BATCH}) RETURNING id, event_id, event_hash"
        )
    # RETURNING comes in no set order (on PostgreSQL, the order of the row addresses, about queue order for an
    # append-only queue): sorted here, where the rows are nearly in order already, rather than by PostgreSQL,
    # whose sort of a 50,000-row batch spills to disk (bench/README.md, "Where a first checkpoint's time goes").
    return sorted(rows, key=itemgetter("id"))


async def _fetch_nodes(conn: BaseDBAsyncClient | None, keys: set[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    """Level 0 nodes are the leaf hashes in log_entries; levels 1 to STORED_FROM_LEVEL - 1 are hashed from their
    leaves; higher levels are in merkle_nodes."""
    found: dict[tuple[int, int], bytes] = {}
    derived = [(level, index) for level, index in keys if 0 < level < STORED_FROM_LEVEL]
    positions = {index for level, index in keys if level == 0}
    for level, index in derived:
        positions.update(range(index << level, (index + 1) << level))
    leaves = await _fetch_leaves(conn, sorted(positions))
    for level, index in keys:
        if level == 0 and index in leaves:
            found[(0, index)] = leaves[index]
    for level, index in derived:
        span = [leaves.get(p) for p in range(index << level, (index + 1) << level)]
        if all(span):
            found[(level, index)] = merkle.perfect_subtree_hash(cast(list[bytes], span))
    by_level: dict[int, list[int]] = {}
    for level, index in keys:
        if level >= STORED_FROM_LEVEL:
            by_level.setdefault(level, []).append(index)
    for level, indexes in by_level.items():
        for start in range(0, len(indexes), 500):
            query = MerkleNode.filter(level=level, index__in=indexes[start : start + 500])
            if conn is not None:
                query = query.using_db(conn)
            for row in await query.values("level", "index", "hash"):
                found[(row["level"], row["index"])] = bytes.fromhex(row["hash"])
    missing = keys - set(found)
    if missing:
        raise LookupError(f"Merkle nodes missing from the log: {sorted(missing)[:5]}")
    return found


async def _fetch_leaves(conn: BaseDBAsyncClient | None, positions: list[int]) -> dict[int, bytes]:
    """Leaf hashes by position, 500 positions per query."""
    client = conn or connection()
    leaves: dict[int, bytes] = {}
    for start in range(0, len(positions), 500):
        chunk = positions[start : start + 500]
        marks = ", ".join(placeholders(client, len(chunk)))
        _, rows = await client.execute_query(
            f"SELECT position, leaf_hash FROM log_entries WHERE position IN ({marks})", chunk
        )
        for row in rows:
            leaves[int(row["position"])] = bytes.fromhex(row["leaf_hash"])
    return leaves


async def _store_identity(found: Identity, now: datetime) -> Identity:
    """Store the id the log adopts; a process that stored one meanwhile wins, and its id is the one returned."""
    conn = connection()
    ph = placeholders(conn, 4)
    await conn.execute_query(
        f"INSERT INTO log_identity (id, log_id, source, adopted_at) VALUES ({', '.join(ph)}) "
        "ON CONFLICT (id) DO NOTHING",
        [IDENTITY_ROW, found.log_id, found.source, now],
    )
    row = await LogIdentity.get(id=IDENTITY_ROW)
    if (row.log_id, row.source) == (found.log_id, found.source):
        log.info("transparency log id stored: %r (from %s)", row.log_id, row.source.replace("_", " "))
    return Identity(row.log_id, row.source, row.adopted_at)


def _signed(row: Checkpoint) -> SignedCheckpoint:
    return SignedCheckpoint(signed_log_id(row.jws) or "", row.tree_size, row.root_hash, row.timestamp, row.jws)
