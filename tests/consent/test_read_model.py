"""PostgreSQL's read model for the consent check (server.consent.read_model): `subjects.check_states`, kept by a
trigger on `consent_states`, is what a check reads there. These tests change the states behind the ledger's back
(as an operator's repair would) and compare the instants the database writes with Python's. Concurrent ledger
writers are tests/ledger/test_concurrency.py's, where `verify_ledger` also compares the read model with the states;
the backfill of migration 0014 is tests/db/test_migrations.py's. SQLite has no read model: a check reads its projection
directly."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import orjson
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from server.app import create_app
from server.consent import read_model
from server.settings import Settings
from tests.databases import asyncpg_dsn, run_sync
from tests.helpers.api import bearer, record
from tests.helpers.checks import check
from tests.helpers.clock import Clock
from tests.helpers.sql import sql

pytestmark = pytest.mark.parametrize("backend", ["postgres"])


def answers(client: TestClient, auth: dict[str, str], questions: list[dict[str, str]]) -> list[dict[str, Any]]:
    """Each question's answer, single, batch and stream agreeing (tests.helpers.checks.check)."""
    return [check(client, auth, q["subject"], q["purpose"], q["channel"]) for q in questions]


def stale_refs(database_url: str) -> list[tuple[Any, ...]]:
    """Subjects whose read model differs from a recomputation from their states."""
    return sql(
        database_url,
        query="SELECT ref FROM subjects WHERE check_states IS DISTINCT FROM consent_check_states(id) ORDER BY ref",
    )


def test_a_repair_of_the_states_outside_the_ledger_is_what_the_check_answers(
    client: TestClient, auth: dict[str, str], settings: Settings
) -> None:
    """The trigger recomputes the subject's read model on any insert, update or delete of a state row, whoever
    writes it: here raw SQL on another connection."""
    assert record(client, auth, "cust-r", [("offers", "email", "grant"), ("offers", "sms", "grant")]).status_code == 201
    email = {"subject": "cust-r", "purpose": "offers", "channel": "email"}
    sms = {"subject": "cust-r", "purpose": "offers", "channel": "sms"}
    assert [a["reason"] for a in answers(client, auth, [email, sms])] == ["granted", "granted"]
    url = settings.database_url
    subject = "(SELECT id FROM subjects WHERE ref = 'cust-r')"
    sql(url, f"UPDATE consent_states SET status = 'refused' WHERE subject_id = {subject} AND channel_id = 'email'")
    assert [a["reason"] for a in answers(client, auth, [email, sms])] == ["refused", "granted"]
    sql(url, f"DELETE FROM consent_states WHERE subject_id = {subject} AND channel_id = 'sms'")
    assert [a["reason"] for a in answers(client, auth, [email, sms])] == ["refused", "no_record"]
    sql(url, f"DELETE FROM consent_states WHERE subject_id = {subject}")
    assert sql(url, query="SELECT check_states FROM subjects WHERE ref = 'cust-r'") == [(None,)]
    assert [a["reason"] for a in answers(client, auth, [email, sms])] == ["no_record", "no_record"]
    assert stale_refs(url) == []


@given(
    instant=st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)).map(
        lambda t: t.replace(microsecond=t.microsecond if t.microsecond % 3 else 0)
    )
)
@hypothesis_settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_database_writes_instants_as_python_does(settings: Settings, instant: datetime) -> None:
    """`consent_instant_text` is `read_model.instant_text` (UTC, `isoformat(" ")`: microseconds only when not zero),
    whatever the session's time zone (one with a 45-minute offset here): the bulk answers compare these texts with
    Python's. (The database is only read: one for all the examples.)"""

    async def text() -> str:
        conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
        try:
            await conn.execute("SET TIME ZONE 'Pacific/Chatham'")
            value: str = await conn.fetchval("SELECT consent_instant_text($1)", instant)
            return value
        finally:
            await conn.close()

    assert run_sync(text()) == read_model.instant_text(instant) == instant.isoformat(" ")


def test_truncating_the_states_empties_the_read_model(
    client: TestClient, auth: dict[str, str], settings: Settings
) -> None:
    assert record(client, auth, "cust-t", [("offers", "email", "grant")]).status_code == 201
    sql(settings.database_url, "TRUNCATE consent_states")
    assert sql(settings.database_url, query="SELECT ref, check_states FROM subjects") == [("cust-t", None)]
    question = {"subject": "cust-t", "purpose": "offers", "channel": "email"}
    assert [a["reason"] for a in answers(client, auth, [question])] == ["no_record"]


@pytest.mark.parametrize("column", ["since", "valid_until"])
def test_an_infinite_instant_is_refused(
    client: TestClient, auth: dict[str, str], settings: Settings, column: str
) -> None:
    """The read model holds instants as text, and infinity has none: an infinite `valid_until` would read as no
    expiry. The database refuses one from any writer; the state and the answer stay as they were."""
    assert record(client, auth, "cust-i", [("offers", "email", "grant")]).status_code == 201
    question = {"subject": "cust-i", "purpose": "offers", "channel": "email"}
    before = answers(client, auth, [question])
    with pytest.raises(asyncpg.CheckViolationError):
        sql(settings.database_url, f"UPDATE consent_states SET {column} = '-infinity'")
    assert answers(client, auth, [question]) == before
    assert stale_refs(settings.database_url) == []


def test_a_check_finds_the_subject_through_the_hash_index_of_refs(settings: Settings) -> None:
    """The check's refs, compared COLLATE "C", match only `read_model.REF_INDEX` (migration 0015): neither the unique
    B-tree of refs (the database's collation) nor 0014's B-tree, which 0015 dropped. Sequential scans are off so that
    the tiny test table does not hide which index the query can use."""
    from server.consent.reader import _PG_MANY, key_texts

    async def plan() -> str:
        conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
        try:
            await conn.execute("SET enable_seqscan = off")
            keys = [("cust-a", "offers", "email"), ("cust-b", "offers", "sms")]
            rows = await conn.fetch(f"EXPLAIN {_PG_MANY}", *key_texts(keys))
            return "\n".join(row[0] for row in rows)
        finally:
            await conn.close()

    text = run_sync(plan())
    assert f"using {read_model.REF_INDEX} on subjects" in text, text
    indexes = sql(settings.database_url, query="SELECT indexname FROM pg_indexes WHERE tablename = 'subjects'")
    assert (read_model.BYTES_INDEX,) not in indexes


def test_bulk_answers_keep_the_keys_order_whatever_join_postgresql_plans(
    settings: Settings, clock: Clock, postgres_template: Any
) -> None:
    """The bulk read takes the values in the order PostgreSQL's join gives them, with the keys' positions beside
    them. With nested loops and hash joins off for every connection to the database, the join gives the keys sorted
    by ref: the reader reads them again in key order, and each batch and stream answer is still its single check's."""
    from server.consent.reader import _PG_MANY, _positions, key_texts

    database = urlsplit(settings.database_url).path.lstrip("/")
    for join in ("enable_nestloop", "enable_hashjoin"):  # a merge join: the keys sorted by ref
        sql(postgres_template.admin_url, f'ALTER DATABASE "{database}" SET {join} = off')
    refs = [f"cust-{n:03d}" for n in range(40)]
    keys = [(ref, "offers", channel) for ref in reversed(refs) for channel in ("email", "sms")] + [
        ("nobody", "offers", "email")
    ]

    async def positions() -> str:
        conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
        try:
            row = await conn.fetchrow(_PG_MANY, *key_texts(keys))
            return str(row[1])
        finally:
            await conn.close()

    with TestClient(create_app(settings, clock=clock)) as client:
        auth = bearer(client)
        for number, ref in enumerate(refs):
            decision = ("offers", ("email", "sms")[number % 2], ("grant", "deny")[number % 3 % 2])
            assert record(client, auth, ref, [decision]).status_code == 201
        assert run_sync(positions()) != _positions(len(keys))  # the join's order is not the keys' order here
        questions = [{"subject": ref, "purpose": purpose, "channel": channel} for ref, purpose, channel in keys]
        singles = [client.get("/v1/consents/check", params=q, headers=auth).json() for q in questions]
        assert {answer["reason"] for answer in singles} == {"granted", "refused", "no_record", "unknown_subject"}
        batch = client.post("/v1/consents/check", json={"checks": questions}, headers=auth)
        assert batch.status_code == 200, batch.text
        assert batch.json()["results"] == [{**q, **a} for q, a in zip(questions, singles, strict=True)]
        stream = client.post(
            "/v1/consents/check/stream",
            content=b"".join(orjson.dumps(q) + b"\n" for q in questions),
            headers={**auth, "Content-Type": "application/x-ndjson"},
        )
        lines = [orjson.loads(line) for line in stream.content.splitlines()]
        assert lines == [{"line": n, **q, **a} for n, (q, a) in enumerate(zip(questions, singles, strict=True), 1)]
