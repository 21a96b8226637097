"""A busy database, for real: locks that another connection holds while the app writes."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator

from starlette.testclient import TestClient
from tortoise import connections

from server.settings import Settings
from tests.helpers.app import run


@contextlib.contextmanager
def sqlite_write_lock_held(client: TestClient, settings: Settings) -> Iterator[None]:
    """Another process's connection holds SQLite's write lock for the block, and the app waits 200 ms for it
    (instead of its 10 s busy timeout): what the app's writes meet when a CLI or a backup keeps the lock."""

    async def short_busy_timeout() -> None:
        await connections.get("default").execute_script("PRAGMA busy_timeout = 200")

    run(client, short_busy_timeout)
    holder = sqlite3.connect(settings.database_url.removeprefix("sqlite://"), isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()
