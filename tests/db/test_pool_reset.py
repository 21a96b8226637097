"""The ORM's PostgreSQL pool gives a connection back without asyncpg's reset query (`server.db.keep_session`): a
round trip less a request. What that means, seen from the database: a session setting survives a release (so
nothing on this pool may rely on one being cleared) and a transaction-scoped advisory lock does not. The
migrator's connections keep asyncpg's reset."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from tortoise import Tortoise

from server.db import connection, tortoise_config
from tests.databases import PostgresTemplate, run_sync


@pytest.fixture
def one_connection_url(postgres_template: PostgresTemplate) -> Iterator[str]:
    url, name = postgres_template.empty()
    try:
        yield f"{url}?minsize=1&maxsize=1"  # every query below acquires the same connection
    finally:
        postgres_template.drop(name)


async def _session_after_release(url: str, *, migrating: bool) -> dict[str, Any]:
    await Tortoise.init(config=tortoise_config(url, migrating=migrating))
    try:
        conn = connection()
        pid = (await conn.execute_query_dict("SELECT pg_backend_pid() AS pid"))[0]["pid"]
        await conn.execute_query("SELECT set_config('application_name', 'set-by-a-request', false)")
        async with conn._in_transaction() as tx:  # an advisory lock of the transaction, as the log's sequencer
            await tx.execute_query("SELECT pg_advisory_xact_lock(424242)")
        row = (
            await conn.execute_query_dict(
                "SELECT pg_backend_pid() AS pid, current_setting('application_name') AS name, "
                "(SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()) AS locks"
            )
        )[0]
        return {"same": row["pid"] == pid, "name": row["name"], "locks": row["locks"]}
    finally:
        await Tortoise.close_connections()


def test_the_serving_pool_sends_no_reset_and_the_migrator_does(one_connection_url: str) -> None:
    served = run_sync(_session_after_release(one_connection_url, migrating=False))
    assert served == {"same": True, "name": "set-by-a-request", "locks": 0}
    migrating = run_sync(_session_after_release(one_connection_url, migrating=True))
    assert migrating["same"] and migrating["name"] != "set-by-a-request", "asyncpg's RESET ALL ran"
    assert migrating["locks"] == 0
