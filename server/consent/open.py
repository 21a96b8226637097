"""Opening the hot-path reader that matches `DATABASE_URL`."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from server.consent.reader import PostgresStateReader, SqliteStateReader, StateReader
from server.db import credentials


async def open_reader(database_url: str) -> StateReader:
    if urlsplit(database_url).scheme == "sqlite":
        return SqliteStateReader(credentials(database_url)["credentials"]["file_path"])
    parts = urlsplit(database_url)
    dsn = urlunsplit(("postgresql", parts.netloc, parts.path, "", ""))
    return await PostgresStateReader.connect(dsn)
