"""A busy database, for real: locks that another connection holds while the app writes."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator

import asyncpg
from starlette.testclient import TestClient
from tortoise import connections

from server.db import credentials
from server.settings import Settings
from tests.databases import asyncpg_dsn
from tests.helpers.app import run
from tests.helpers.sql import is_sqlite, sql

# How long an app's write waits for a lock held by another connection here, instead of the app's own wait.
SHORT_WAIT_MS = 200
# The PostgreSQL advisory lock that `event_inserts_wait_for_a_held_lock` makes each insert into consent_events take.
EVENTS_GATE = 7_303_265


@contextlib.contextmanager
def sqlite_write_lock_held(client: TestClient, settings: Settings) -> Iterator[None]:
    """Another process's connection holds SQLite's write lock for the block, and the app waits 200 ms for it
    (instead of its 10 s busy timeout): what the app's writes meet when a CLI or a backup keeps the lock."""

    async def short_busy_timeout() -> None:
        await connections.get("default").execute_script(f"PRAGMA busy_timeout = {SHORT_WAIT_MS}")

    run(client, short_busy_timeout)
    holder = sqlite3.connect(settings.database_url.removeprefix("sqlite://"), isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


@contextlib.contextmanager
def event_inserts_wait_for_a_held_lock(client: TestClient, settings: Settings) -> Iterator[None]:
    """For the block, each insert into `consent_events` first waits for a lock that another connection holds, for
    200 ms, then fails as a write behind a long-held lock does, with the driver's own error: SQLite's "database is
    locked", PostgreSQL's lock timeout (SQLSTATE 55P03). Only the ledger's writes meet it: a transaction that
    inserts no event commits as usual. A trigger, created here and dropped at the end of the block, makes the insert
    wait; nothing in the app is replaced."""
    gate = _sqlite_events_gate if is_sqlite(settings.database_url) else _postgres_events_gate
    with gate(client, settings):
        yield


@contextlib.contextmanager
def _sqlite_events_gate(client: TestClient, settings: Settings) -> Iterator[None]:
    """SQLite locks a whole file, so the lock is on another one: the app's connection attaches it, and a trigger of
    that connection (TEMP, which may write to an attached database) writes to it before each event. Another
    connection holds that file's write lock, and the app's connection waits `SHORT_WAIT_MS` for it (its busy
    timeout, set back afterwards)."""
    gate_file = settings.database_url.removeprefix("sqlite://") + "-gate"
    busy_timeout = credentials(settings.database_url)["credentials"]["busy_timeout"]

    async def on_the_apps_connection(script: str) -> None:
        await connections.get("default").execute_script(script)

    run(
        client,
        on_the_apps_connection,
        f"ATTACH DATABASE '{gate_file}' AS gate;"
        "CREATE TABLE IF NOT EXISTS gate.events_gate (passed INTEGER);"
        "CREATE TEMP TRIGGER consent_events_wait_for_the_gate BEFORE INSERT ON consent_events"
        " BEGIN INSERT INTO events_gate VALUES (1); END;"
        f"PRAGMA busy_timeout = {SHORT_WAIT_MS};",
    )
    holder = sqlite3.connect(gate_file, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        run(
            client,
            on_the_apps_connection,
            "DROP TRIGGER temp.consent_events_wait_for_the_gate; DETACH DATABASE gate;"
            f"PRAGMA busy_timeout = {busy_timeout};",
        )


@contextlib.contextmanager
def _postgres_events_gate(client: TestClient, settings: Settings) -> Iterator[None]:
    """A trigger on consent_events takes an advisory lock, with a `lock_timeout` of `SHORT_WAIT_MS` (for the
    trigger's own statements only), and another connection holds that lock."""
    url = settings.database_url
    sql(
        url,
        "CREATE FUNCTION consent_events_wait_for_the_gate() RETURNS trigger LANGUAGE plpgsql"
        f" SET lock_timeout = '{SHORT_WAIT_MS}ms' AS $$"
        f" BEGIN PERFORM pg_advisory_xact_lock({EVENTS_GATE}); RETURN NEW; END $$",
        "CREATE TRIGGER consent_events_wait_for_the_gate BEFORE INSERT ON consent_events"
        " FOR EACH ROW EXECUTE FUNCTION consent_events_wait_for_the_gate()",
    )

    async def hold() -> asyncpg.Connection:
        holder = await asyncpg.connect(asyncpg_dsn(url))
        await holder.execute(f"SELECT pg_advisory_lock({EVENTS_GATE})")
        return holder

    async def release(holder: asyncpg.Connection) -> None:
        await holder.close()  # a session's advisory locks end with it

    holder = run(client, hold)  # in the app's event loop, which keeps running between requests
    try:
        yield
    finally:
        run(client, release, holder)
        sql(
            url,
            "DROP TRIGGER consent_events_wait_for_the_gate ON consent_events",
            "DROP FUNCTION consent_events_wait_for_the_gate()",
        )
