"""Opening the hot-path reader that matches `DATABASE_URL`."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from server.consent.reader import BULK_MMAP_MB, PostgresStateReader, SqliteStateReader, StateReader
from server.db import credentials
from server.pgpool import DEFAULT_ACQUIRE_TIMEOUT_S


async def open_reader(
    database_url: str, sqlite_bulk_mmap_mb: int = BULK_MMAP_MB, *, acquire_timeout_s: float = DEFAULT_ACQUIRE_TIMEOUT_S
) -> StateReader:
    """`sqlite_bulk_mmap_mb`: the `SQLITE_BULK_MMAP_MB` setting (`SqliteStateReader`); PostgreSQL ignores it.
    `acquire_timeout_s`: the `DATABASE_ACQUIRE_TIMEOUT_SECONDS` setting (`PostgresStateReader`); SQLite's reader
    has no pool (its connections wait for a lock under their busy timeout)."""
    if urlsplit(database_url).scheme == "sqlite":
        path = credentials(database_url)["credentials"]["file_path"]
        return SqliteStateReader(path, bulk_mmap_mb=sqlite_bulk_mmap_mb)
    dsn, schema = postgres_target(database_url)
    return await PostgresStateReader.connect(dsn, search_path=schema, acquire_timeout_s=acquire_timeout_s)


def postgres_target(database_url: str) -> tuple[str, str | None]:
    """asyncpg's DSN for a PostgreSQL `DATABASE_URL`, and the schema of its `?schema=` (None: the server's default
    `search_path`), which the check's connections take as their `search_path`, as Tortoise's connections get it:
    the check's SQL and the read model's functions name their tables without one."""
    parts = urlsplit(database_url)
    dsn = urlunsplit(("postgresql", parts.netloc, parts.path, "", ""))
    return dsn, credentials(database_url)["credentials"].get("schema")
