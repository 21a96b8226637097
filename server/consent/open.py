"""Opening the hot-path reader that matches `DATABASE_URL`."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from server.consent.reader import BULK_MMAP_MB, PostgresStateReader, SqliteStateReader, StateReader
from server.db import credentials


async def open_reader(database_url: str, sqlite_bulk_mmap_mb: int = BULK_MMAP_MB) -> StateReader:
    """`sqlite_bulk_mmap_mb`: the `SQLITE_BULK_MMAP_MB` setting (`SqliteStateReader`); PostgreSQL ignores it."""
    if urlsplit(database_url).scheme == "sqlite":
        path = credentials(database_url)["credentials"]["file_path"]
        return SqliteStateReader(path, bulk_mmap_mb=sqlite_bulk_mmap_mb)
    parts = urlsplit(database_url)
    dsn = urlunsplit(("postgresql", parts.netloc, parts.path, "", ""))
    # The schema of `?schema=`, as Tortoise's connections get it: the check's SQL and the read model's functions
    # name their tables without one.
    schema = credentials(database_url)["credentials"].get("schema")
    return await PostgresStateReader.connect(dsn, search_path=schema)
