"""A PostgreSQL deployment in a schema of its own (`DATABASE_URL=postgres://.../db?schema=NAME`, which
`server.db.credentials` accepts): every table, trigger and function lives in that schema, and every path works
there: recording (and the read model's triggers), the single, batch and stream checks (their own connection pool,
and the stream's worker processes), the audience export, `ledger verify`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import asyncpg
import pytest
from starlette.testclient import TestClient

from server.app import create_app
from server.settings import Settings
from tests.databases import PostgresTemplate, asyncpg_dsn, prepare, run_sync
from tests.helpers.api import bearer, record
from tests.helpers.app import app_settings, services_of
from tests.helpers.checks import check
from tests.helpers.ledger import verify

SCHEMA = "consent_tenant"


async def _execute(url: str, statement: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return list(await conn.fetch(statement))
    finally:
        await conn.close()


@pytest.fixture
def schema_settings(postgres_template: PostgresTemplate, keys_dir: Path) -> Iterator[Settings]:
    url, name = postgres_template.empty()
    try:
        run_sync(_execute(url, f"CREATE SCHEMA {SCHEMA}"))
        schema_url = f"{url}?schema={SCHEMA}"
        run_sync(prepare(schema_url))
        yield app_settings(schema_url, keys_dir)
    finally:
        postgres_template.drop(name)


def test_a_deployment_in_its_own_schema_records_checks_and_exports(schema_settings: Settings, tmp_path: Path) -> None:
    url = schema_settings.database_url
    public = run_sync(_execute(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
    assert public == [], "every table goes to the deployment's schema"
    with TestClient(create_app(replace(schema_settings, stream_workers=2)), raise_server_exceptions=False) as client:
        auth = bearer(client)
        assert record(client, auth, "cust-a", [("offers", "email", "grant")]).status_code == 201
        assert record(client, auth, "cust-b", [("offers", "email", "grant")]).status_code == 201
        assert record(client, auth, "cust-b", [("offers", "email", "withdraw")]).status_code == 201

        assert check(client, auth, "cust-a", "offers", "email")["reason"] == "granted"
        assert check(client, auth, "cust-b", "offers", "email")["reason"] == "withdrawn"
        assert check(client, auth, "nobody", "offers", "email")["reason"] == "unknown_subject"
        checks = services_of(client).checks
        assert checks is not None and checks.stream_workers is not None
        assert checks.stream_workers.chunks_answered == 3  # each check's stream read by a worker, in the schema
        export = client.get("/v1/audiences/offers/email", headers=auth)
        assert export.status_code == 200, export.text
        assert export.text == '{"ref":"cust-a"}\n'
    states = run_sync(_execute(url, f"SELECT count(*) AS n FROM {SCHEMA}.subjects WHERE check_states IS NOT NULL"))
    assert states[0]["n"] == 2  # the read model's triggers ran in the schema
    result = verify(schema_settings, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
