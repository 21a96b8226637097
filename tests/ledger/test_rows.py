"""The ledger's raw writes (`server.ledger.rows`) store each value exactly as the ORM's `Model.create` stores it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.testclient import TestClient
from tortoise import Tortoise
from tortoise.transactions import in_transaction

from server.db import is_postgres
from server.ledger.rows import EVENT_COLUMNS, RECEIPT_COLUMNS, Statements, events_sql, receipt_sql, write_all
from server.models import ConsentEvent, Receipt
from tests.helpers.api import record
from tests.helpers.app import run

AT = datetime(2026, 12, 1, 10, 0, 0, 123456, tzinfo=UTC)


async def _stored(table: str, columns: tuple[str, ...], ids: list[str]) -> list[dict[str, Any]]:
    """The rows as the database holds them: every column as text (and its storage class on SQLite)."""
    conn = Tortoise.get_connection("default")
    if is_postgres(conn):
        select = ", ".join(f"{c}::text AS {c}" for c in columns)
        where = "id::text IN (" + ", ".join(f"'{i}'" for i in ids) + ")"
    else:
        select = ", ".join(f"{c}, typeof({c}) AS type_of_{c}" for c in columns)
        where = "id IN (" + ", ".join(f"'{i}'" for i in ids) + ")"
    rows = await conn.execute_query_dict(f"SELECT {select} FROM {table} WHERE {where} ORDER BY id")
    return [{k: v for k, v in row.items() if k not in ("id", "type_of_id")} for row in rows]


async def _both_ways(subject_id: str, policy_id: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The same event and receipt written by the ORM and by the raw statements (one shared statement on
    PostgreSQL); returns the stored rows of each, ids aside."""
    values: dict[str, Any] = {
        "subject_id": subject_id,
        "seq": 90,
        "purpose_id": "offers",
        "channel_id": "email",
        "action": "grant",
        "status": "granted",
        "policy_version_id": policy_id,
        "touchpoint": "api",
        "method": "api",
        "actor_type": "client",
        "actor_id": "client-é",
        "ui_snapshot_sha256": None,
        "evidence": {"ip": "203.0.113.0/24", "user_agent": "Mozilla/5.0 \u00e9\u2028\U0001f600", "gpc": False},
        "recorded_at": AT,
        "valid_until": AT + timedelta(days=365),
        "prev_hash": "0" * 64,
    }
    orm_id, raw_id = str(uuid.uuid4()), str(uuid.uuid4())
    orm_receipt, raw_receipt = str(uuid.uuid4()), str(uuid.uuid4())
    async with in_transaction() as conn:
        await ConsentEvent.create(using_db=conn, id=orm_id, hash="a" * 64, **values)
        await Receipt.create(
            using_db=conn, id=orm_receipt, subject_id=subject_id, event_ids=[orm_id], jws="x.y.z", created_at=AT
        )
        writes = Statements(conn)
        own = {"id": raw_id, "hash": "b" * 64, "seq": 91}  # the keys unique per row
        row = [own.get(c, values.get(c)) for c in EVENT_COLUMNS]
        params = writes.params()
        writes.add(events_sql(params, [row]), params)
        params = writes.params()
        writes.add(receipt_sql(params, raw_receipt, subject_id, [orm_id], "x.y.z", AT), params)
        await write_all(conn, writes.parts)
    columns = tuple(c for c in EVENT_COLUMNS if c not in ("hash", "seq"))
    events = await _stored("consent_events", columns, [orm_id, raw_id])
    receipts = await _stored("receipts", RECEIPT_COLUMNS, [orm_receipt, raw_receipt])
    return events, receipts


def test_raw_rows_are_stored_as_the_orm_stores_them(client: TestClient, auth: dict[str, str]) -> None:
    answer = record(client, auth, "rows-1", [("offers", "email", "grant")])
    assert answer.status_code == 201, answer.text

    async def subject_and_policy() -> tuple[str, int]:
        rows = await ConsentEvent.filter(subject__ref="rows-1").values("subject_id", "policy_version_id")
        return str(rows[0]["subject_id"]), int(rows[0]["policy_version_id"])

    subject_id, policy_id = run(client, subject_and_policy)
    events, receipts = run(client, _both_ways, subject_id, policy_id)
    assert len(events) == 2 and events[0] == events[1], events
    assert len(receipts) == 2 and receipts[0] == receipts[1], receipts
    assert "recorded_at" in events[0] and events[0]["evidence"] is not None
