"""Database wiring: the Tortoise configuration built from settings, and the dialect helpers raw SQL needs."""

from __future__ import annotations

import contextlib
import errno
import importlib
import logging
import os
import pkgutil
import sqlite3
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import asyncpg
from tortoise import Tortoise, connections
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import BaseORMException, DBConnectionError
from tortoise.models import Model

from server.errors import ConsentError, DatabaseBusy, ServiceUnavailable
from server.files import create_private
from server.pgpool import DEFAULT_ACQUIRE_TIMEOUT_S

APP_LABEL = "models"
MIGRATIONS_MODULE = "migrations"
NOT_MIGRATED = 3  # exit status of a command run on a database that lacks a migration of this code


def credentials(
    database_url: str, *, migrating: bool = False, acquire_timeout_s: float = DEFAULT_ACQUIRE_TIMEOUT_S
) -> dict[str, Any]:
    """Tortoise connection dict for `database_url`.

    SQLite runs in WAL mode with `synchronous=FULL` so an acknowledged commit survives a crash (invariant 5,
    docs/design.md), and a busy timeout so a CLI command and the server can share the file. While migrating, foreign
    keys are off: a table rebuild would otherwise cascade into child rows (checked afterwards with
    `PRAGMA foreign_key_check`). On PostgreSQL, waiting for a pool connection (or for a new one's handshake) lasts
    at most `acquire_timeout_s` (`server.pgpool`), then the request answers 503.
    """
    parts = urlsplit(database_url)
    if parts.scheme == "sqlite":
        path = unquote(parts.netloc + parts.path)
        if path != ":memory:" and not Path(path).exists():
            # Created 0600 before SQLite opens it: SQLite gives its -wal and -shm files the database file's mode.
            # An existing file is never opened here: closing a descriptor on it would drop the POSIX locks SQLite
            # holds on it for this process's connections (and it may be read-only). The server tightens it at start.
            with contextlib.suppress(FileExistsError):  # created meanwhile by another process
                os.close(create_private(Path(path)))
        return {
            "engine": "tortoise.backends.sqlite",
            "credentials": {
                "file_path": path,
                "journal_mode": "WAL",
                "synchronous": "FULL",
                "busy_timeout": 10000,
                # 64 MiB page cache instead of SQLite's 2 MiB default: large ledgers are read and indexed at random.
                "cache_size": -65536,
                "foreign_keys": "OFF" if migrating else "ON",
                # Deleted and overwritten content is zeroed, not left in free pages: an erased address must not
                # be readable in the file (GDPR 17). Costs a write of the freed bytes.
                "secure_delete": "ON",
            },
        }
    query = dict(parse_qsl(parts.query))
    return {
        "engine": "server.pgpool",
        "credentials": {
            "host": parts.hostname or "127.0.0.1",
            "port": parts.port or 5432,
            "user": unquote(parts.username or "postgres"),
            "password": unquote(parts.password or ""),
            "database": parts.path.lstrip("/") or "postgres",
            "minsize": int(query.get("minsize", "1")),
            "maxsize": int(query.get("maxsize", "10")),
            "acquire_timeout": acquire_timeout_s,
            **({"schema": query["schema"]} if "schema" in query else {}),
            **({} if migrating else {"reset": keep_session}),
        },
    }


async def keep_session(connection: asyncpg.Connection) -> None:
    """The ORM pool's reset of a connection given back: nothing to send. asyncpg's default sends
    `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL` at every release: a round trip, and
    PostgreSQL's CPU, on each request that touched the database. Nothing on this pool leaves session state: the
    advisory locks taken (`server.proof.log`, `server.kernel.idempotency`) are `pg_*_xact_lock`, released at the
    transaction's end; no cursor outlives its transaction, nothing LISTENs, nothing SETs after connecting (the
    `search_path` of `?schema=` is a connection setting, kept). Code that needs session state must not take it
    on this pool. asyncpg still rolls back a transaction left open, before calling this. Passed to
    `asyncpg.create_pool(reset=...)` through Tortoise's credentials; not while migrating (the migrator's
    connections keep asyncpg's reset)."""


def sqlite_path(database_url: str) -> Path | None:
    """The database file of a `sqlite://` URL; None for PostgreSQL or an in-memory database."""
    parts = urlsplit(database_url)
    if parts.scheme != "sqlite":
        return None
    path = unquote(parts.netloc + parts.path)
    return None if path == ":memory:" else Path(path)


def tortoise_config(
    database_url: str, *, migrating: bool = False, acquire_timeout_s: float = DEFAULT_ACQUIRE_TIMEOUT_S
) -> dict[str, Any]:
    return {
        "connections": {"default": credentials(database_url, migrating=migrating, acquire_timeout_s=acquire_timeout_s)},
        "apps": {
            APP_LABEL: {
                "models": ["server.models"],
                "default_connection": "default",
                "migrations": MIGRATIONS_MODULE,
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


def column_length(model: type[Model], field: str) -> int:
    """The most characters `model.field` (a CharField) holds. The ORM refuses to even query with a longer value (a
    ValidationError, so a 500), so input longer than this is known to match nothing."""
    length = getattr(model._meta.fields_map[field], "max_length", None)
    if not isinstance(length, int):
        raise TypeError(f"{model.__name__}.{field} has no max_length")
    return length


def connection() -> BaseDBAsyncClient:
    return connections.get("default")


def is_postgres(conn: BaseDBAsyncClient | None = None) -> bool:
    return (conn or connection()).capabilities.dialect == "postgres"


def placeholders(conn: BaseDBAsyncClient, count: int, start: int = 1) -> list[str]:
    """Parameter markers for raw SQL: `$1, $2` on PostgreSQL, `?` on SQLite."""
    if is_postgres(conn):
        return [f"${i}" for i in range(start, start + count)]
    return ["?"] * count


# The column `lock_row` writes on SQLite, per table: unindexed and referenced by no foreign key, so that the no-op
# UPDATE costs nothing more (an UPDATE of `id` would make SQLite check every table that references the row, by full
# scans of those without an index on the reference).
_LOCK_COLUMNS = {"subjects": "last_seq", "breaches": "version"}


async def lock_row(conn: BaseDBAsyncClient, table: str, row_id: object) -> None:
    """Take the write lock on one row (PostgreSQL) or on the database (SQLite) before a transaction reads what it
    will change.

    `SELECT ... FOR UPDATE` locks nothing on SQLite. There a transaction that reads first and writes after fails
    at once with "database is locked" (SQLITE_BUSY_SNAPSHOT, which the busy timeout cannot wait out) when another
    process committed in between. A no-op UPDATE as the transaction's first statement makes it wait for the write
    lock instead, under the busy timeout, and its reads then see the last commit.
    """
    marker = placeholders(conn, 1)[0]
    if isinstance(row_id, uuid.UUID):
        row_id = str(row_id)  # as Tortoise stores it on SQLite; asyncpg takes either
    if is_postgres(conn):
        await conn.execute_query(f"SELECT 1 FROM {table} WHERE id = {marker} FOR UPDATE", [row_id])
    else:
        column = _LOCK_COLUMNS[table]
        await conn.execute_query(f"UPDATE {table} SET {column} = {column} WHERE id = {marker}", [row_id])


# What a busy database raises: a lock that stayed taken, a transaction PostgreSQL cancelled for another, no free
# connection. Anything else a driver raises is a defect (a 500, logged).
_BUSY_POSTGRES = (
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.LockNotAvailableError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.CannotConnectNowError,
)


def is_busy_error(exc: BaseException) -> bool:
    """Whether `exc` means "busy, try again": the driver's error itself, raised `from` it, or wrapped by Tortoise
    (which passes the driver's error as its argument). An error raised while handling a busy one is not busy."""
    for current in _causes(exc):
        if isinstance(current, sqlite3.OperationalError) and (
            "database is locked" in str(current) or "database is busy" in str(current)
        ):
            return True
        if isinstance(current, _BUSY_POSTGRES):
            return True
    return False


# What an unreachable database or a full disk raises: the connection lost (a backend terminated, the server
# restarted, the network cut), refused, or a database that is gone; PostgreSQL out of disk or memory (SQLSTATE
# class 53); SQLite's I/O and full-disk errors; the operating system's for a file that cannot be written.
_UNAVAILABLE_POSTGRES = (
    asyncpg.exceptions.ConnectionDoesNotExistError,  # "connection was closed in the middle of operation"
    asyncpg.exceptions.ConnectionFailureError,
    asyncpg.exceptions.OperatorInterventionError,  # AdminShutdownError (pg_terminate_backend), CrashShutdownError
    asyncpg.exceptions.InsufficientResourcesError,  # DiskFullError, OutOfMemoryError
    asyncpg.exceptions.InvalidCatalogNameError,  # the database was dropped
    asyncpg.exceptions.ObjectNotInPrerequisiteStateError,  # "database is not accepting connections"
)
_UNAVAILABLE_SQLITE = ("disk i/o error", "database or disk is full", "unable to open database file", "disk is full")
_UNAVAILABLE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.ECONNREFUSED, errno.ECONNRESET, errno.EPIPE}
)


def _is_unavailable(current: BaseException) -> bool:
    if isinstance(current, (*_UNAVAILABLE_POSTGRES, DBConnectionError, ConnectionError, TimeoutError)):
        return True
    if isinstance(current, asyncpg.exceptions.InternalClientError):
        # "cannot switch to state 12; another operation (2) is in progress": the connection's protocol was left
        # mid-operation when its backend went away, before the socket's close was seen
        # "PoolConnectionHolder.release() called on a free connection holder": the pool had already taken back a
        # connection whose socket closed while it was acquired
        return "another operation" in str(current) or "free connection holder" in str(current)
    if isinstance(current, asyncpg.exceptions.InterfaceError):
        # A connection or the pool is closed; or the connection closed while acquired (its backend killed), which
        # detaches it from the pool: "cannot call Connection.fetchrow(): connection has been released back to the
        # pool"
        message = str(current)
        return "closed" in message or "closing" in message or "released back to the pool" in message
    if isinstance(current, sqlite3.Error):
        return any(text in str(current).lower() for text in _UNAVAILABLE_SQLITE)
    if isinstance(current, OSError):
        # asyncpg's connect to several addresses raises a plain OSError("Multiple exceptions: ... Connect call failed")
        return current.errno in _UNAVAILABLE_ERRNOS or "connect call failed" in str(current).lower()
    return False


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, the errors it was raised `from`, and those Tortoise wrapped (it passes the driver's error as its
    argument), each once."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if current.__cause__ is not None:
            pending.append(current.__cause__)
        if isinstance(current, BaseORMException):
            pending.extend(arg for arg in current.args if isinstance(arg, BaseException))


def is_unavailable_error(exc: BaseException) -> bool:
    """Whether `exc` means "the database or the disk cannot be used right now": see `_UNAVAILABLE_POSTGRES`."""
    return any(_is_unavailable(current) for current in _causes(exc))


def send_again_error(exc: BaseException) -> ConsentError | None:
    """The domain error a driver or I/O error stands for when the same request may simply be sent again (nothing
    was kept): `DatabaseBusy` for a busy database, `ServiceUnavailable` for one that cannot be reached or a full
    disk; None for any other error (a defect)."""
    if isinstance(exc, ConsentError):
        return None
    if is_busy_error(exc):
        return DatabaseBusy.now()
    if is_unavailable_error(exc):
        return ServiceUnavailable.now()
    return None


@contextlib.contextmanager
def busy_as_domain_error() -> Iterator[None]:
    """Driver and I/O errors that mean "send it again" (`send_again_error`: a busy database, an unreachable one, a
    full disk) raised as their domain error, `DatabaseBusy` or `ServiceUnavailable`: each surface already answers
    those in its own form (the console's page, the banner's refusal with CORS, the preference center's status
    message); the app's handler answers the rest as problem+json."""
    try:
        yield
    except ConsentError:
        raise
    except Exception as exc:
        domain = send_again_error(exc)
        if domain is None:
            raise
        raise domain from exc


async def truncate_wal() -> bool:
    """SQLite: copy the write-ahead log into the database and truncate it to zero bytes, so that page images written
    before an erasure (the erased values among them) are gone from the `-wal` file too; secure_delete has zeroed
    them in the database. Waits for readers under the busy timeout; False if one still held the log (SQLite then
    reuses it from the start, its size capped by journal_size_limit). PostgreSQL: nothing to do here (VACUUM
    reclaims dead rows; docs/operations.md)."""
    conn = connection()
    if is_postgres(conn):
        return True
    rows = await conn.execute_query_dict("PRAGMA wal_checkpoint(TRUNCATE)")
    return not rows or not rows[0].get("busy")


# What an erasure updates or deletes (server.dsr.effects.erase): their old row versions hold the erased values.
ERASURE_TABLES = ("subjects", "dsr_requests", "dsr_history", "former_contacts", "idempotency_keys")


async def vacuum_after_erasure() -> bool:
    """PostgreSQL: VACUUM the tables an erasure changes, after its commit (VACUUM cannot run in a transaction), so
    the dead row versions that still hold the erased values are pruned from the heap now instead of at
    autovacuum's next pass. Pruning needs no snapshot older than the erasure to be open: a long transaction, a
    running pg_dump or a replication slot holding one keeps them until a later VACUUM. Takes only the lock that
    lets reads and writes go on. False if it failed (the erasure is committed either way). SQLite: nothing to do
    (`secure_delete` zeroes them; `truncate_wal`)."""
    conn = connection()
    if not is_postgres(conn):
        return True
    try:
        await conn.execute_script(f"VACUUM {', '.join(ERASURE_TABLES)}")
    except Exception:
        logging.getLogger("server.db").warning(
            "VACUUM after an erasure failed: autovacuum removes the old row versions later", exc_info=True
        )
        return False
    return True


def migration_names() -> list[str]:
    """The migrations this code ships, in order: the modules of the migrations package, as Tortoise's loader finds
    them (not those starting with `_` or `~`)."""
    package = importlib.import_module(MIGRATIONS_MODULE)
    names = (module.name for module in pkgutil.iter_modules(package.__path__))
    return sorted(name for name in names if not name.startswith(("_", "~")))


async def unapplied_migrations(conn: BaseDBAsyncClient) -> list[str]:
    """The migrations this code ships that the database has not applied (every one on a database never migrated).
    Migrations the database has and this code does not (newer code ran there) are not counted."""
    exists = (
        "SELECT to_regclass('tortoise_migrations') IS NOT NULL AS found"
        if is_postgres(conn)
        else "SELECT count(*) > 0 AS found FROM sqlite_master WHERE type = 'table' AND name = 'tortoise_migrations'"
    )
    if not (await conn.execute_query_dict(exists))[0]["found"]:
        return migration_names()
    marker = placeholders(conn, 1)[0]
    rows = await conn.execute_query_dict(f"SELECT name FROM tortoise_migrations WHERE app = {marker}", [APP_LABEL])
    applied = {row["name"] for row in rows}
    return [name for name in migration_names() if name not in applied]


async def with_database(database_url: str, work: Callable[[], Awaitable[int]]) -> int:
    """Run `work` (a CLI verb) with Tortoise connected to `database_url`, and close the connections after. Exit
    status NOT_MIGRATED, and nothing done, on a database that has not applied every migration of this code."""
    await Tortoise.init(config=tortoise_config(database_url))
    try:
        missing = await unapplied_migrations(connection())
        if missing:
            print(
                f"the database has not applied {', '.join(missing)}: run `python -m server migrate` first",
                file=sys.stderr,
            )
            return NOT_MIGRATED
        return await work()
    finally:
        await Tortoise.close_connections()
