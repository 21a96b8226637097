"""Concurrent writers on one subject never fork the chain (DESIGN invariant 3)."""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from starlette.testclient import TestClient

from server.ledger.replay import replay
from server.ledger.verify import verify_ledger
from server.models import ConsentEvent, ConsentState, Subject
from tests.conftest import record, run


async def _ledger_and_projection(ref: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    subject = await Subject.get(ref=ref)
    events = await ConsentEvent.filter(subject_id=subject.id).order_by("seq").values()
    states = await ConsentState.filter(subject_id=subject.id).values()
    return events, states


def test_fifty_concurrent_writers_on_one_subject(client: TestClient, auth: dict[str, str]) -> None:
    # Each writer grants a different purpose x channel pair, several times, so every write is a valid transition.
    pairs = [("offers", c) for c in ("email", "sms", "phone", "post")] + [("partners", "email"), ("partners", "sms")]

    def write(i: int) -> int:
        purpose, channel = pairs[i % len(pairs)]
        return record(client, auth, "busy", [(purpose, channel, "grant")]).status_code

    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(write, range(50)))
    assert statuses == [201] * 50

    events, states = run(client, _ledger_and_projection, "busy")
    assert [e["seq"] for e in events] == list(range(1, 51))
    assert len({e["hash"] for e in events}) == 50
    for previous, current in itertools.pairwise(events):
        assert current["prev_hash"] == previous["hash"]
    replayed = replay(events)
    assert {(s["purpose_id"], s["channel_id"]): str(s["event_id"]) for s in states} == {
        key: view.event_id for key, view in replayed.items()
    }
    report = run(client, verify_ledger)
    assert report.ok, report.breaks


def test_concurrent_first_writes_create_one_subject(client: TestClient, auth: dict[str, str]) -> None:
    def write(i: int) -> int:
        return record(client, auth, "newcomer", [("offers", "email", "grant")]).status_code

    with ThreadPoolExecutor(max_workers=20) as pool:
        assert list(pool.map(write, range(20))) == [201] * 20
    events, _ = run(client, _ledger_and_projection, "newcomer")
    assert [e["seq"] for e in events] == list(range(1, 21))
