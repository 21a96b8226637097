"""The ledger is append-only (invariant 1, docs/design.md): no code path updates or deletes an event, and the database
refuses it too."""

from __future__ import annotations

import ast

import pytest
from starlette.testclient import TestClient
from tortoise.exceptions import IntegrityError, OperationalError

from server.models import ConsentEvent
from tests.helpers.api import record
from tests.helpers.app import run
from tests.helpers.paths import REPO

SERVER = REPO / "server"


async def _try_update() -> None:
    await ConsentEvent.all().update(status="granted")


async def _try_delete() -> None:
    await ConsentEvent.all().delete()


async def _statuses() -> list[str]:
    rows = await ConsentEvent.all().order_by("seq").values("status")
    return [row["status"] for row in rows]


def test_database_refuses_update_and_delete_of_events(client: TestClient, auth: dict[str, str]) -> None:
    record(client, auth, "cust-1", [("offers", "email", "grant")])
    record(client, auth, "cust-1", [("offers", "email", "withdraw")])
    for attempt in (_try_update, _try_delete):
        with pytest.raises((IntegrityError, OperationalError), match="append-only"):
            run(client, attempt)
    assert run(client, _statuses) == ["granted", "withdrawn"]


def test_no_code_path_updates_or_deletes_events() -> None:
    """Static check: nothing in server/ calls update/delete on ConsentEvent or writes UPDATE/DELETE on its table."""
    offenders = []
    for path in SERVER.rglob("*.py"):
        source = path.read_text()
        lowered = source.lower()
        for verb in ("update consent_events", "delete from consent_events", "truncate consent_events"):
            if verb in lowered and path.name != "append_only.py":
                offenders.append(f"{path}: {verb}")
        for node in ast.walk(ast.parse(source)):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in {"update", "delete", "bulk_update", "save"}
                and "ConsentEvent" in ast.unparse(node.func.value)
            ):
                offenders.append(f"{path}:{node.lineno}: {ast.unparse(node)}")
    assert offenders == []
