"""Raw SQL on the test database: from outside the application (as an operator or an attacker would), or, for
`dump_every_table`, on the app's own connection (`run(client, dump_every_table)`)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from typing import Any

import asyncpg
from tortoise import connections

from server.db import is_postgres
from tests.databases import asyncpg_dsn, postgres_admin_url, run_sync


def is_sqlite(database_url: str) -> bool:
    return database_url.startswith("sqlite://")


def _sqlite_path(database_url: str) -> str:
    return database_url.removeprefix("sqlite://")


async def _pg(database_url: str, statements: list[str], query: str | None) -> list[tuple[Any, ...]]:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        for statement in statements:
            await conn.execute(statement)
        return [tuple(row) for row in await conn.fetch(query)] if query else []
    finally:
        await conn.close()


def sql(database_url: str, *statements: str, query: str | None = None) -> list[tuple[Any, ...]]:
    """Run raw SQL on the test database outside the application (stdlib sqlite3 or asyncpg), then `query`."""
    if is_sqlite(database_url):
        with closing(sqlite3.connect(_sqlite_path(database_url), timeout=10)) as conn:
            for statement in statements:
                conn.execute(statement)
            conn.commit()
            return list(conn.execute(query).fetchall()) if query else []
    return run_sync(_pg(database_url, list(statements), query))


async def dump_every_table() -> str:
    """SELECT * from every table of the database (SQLite: sqlite_master; PostgreSQL: information_schema)."""
    conn = connections.get("default")
    if is_postgres(conn):
        names = await conn.execute_query_dict(
            "SELECT table_name AS name FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
        )
    else:
        names = await conn.execute_query_dict("SELECT name FROM sqlite_master WHERE type = 'table'")
    assert len(names) > 10
    dump = []
    for row in names:
        rows = await conn.execute_query_dict(f'SELECT * FROM "{row["name"]}"')
        dump.append(f"{row['name']}: {rows!r}")
    return "\n".join(dump)


def admin_sql(*statements: str) -> None:
    """Statements on the PostgreSQL server as its administrator (TEST_POSTGRES_URL's database), outside any test
    database: closing one to connections, terminating its backends."""
    admin = postgres_admin_url()
    assert admin is not None, "PostgreSQL tests need TEST_POSTGRES_URL"
    sql(admin, *statements)


def terminate_backends(database: str) -> None:
    """Kill every connection to `database`, as an operator's `pg_terminate_backend` (or a crashed backend) would."""
    admin_sql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'")
