"""Concurrent writers on one subject never fork the chain (invariant 3, docs/design.md)."""

from __future__ import annotations

import itertools
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import asyncpg
import pytest
from starlette.testclient import TestClient
from tortoise.exceptions import OperationalError

from server.db import is_busy_error
from server.errors import DatabaseBusy
from server.ledger.replay import replay
from server.ledger.verify import verify_ledger
from server.models import ConsentEvent, ConsentState, Subject, UISnapshot
from server.settings import Settings
from tests.helpers.api import record
from tests.helpers.app import run
from tests.helpers.busy import sqlite_write_lock_held


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


@pytest.mark.parametrize("backend", ["sqlite"])  # SQLite's one write lock; PostgreSQL locks rows and waits for them
def test_a_write_that_cannot_get_the_sqlite_lock_is_a_503_to_retry_and_keeps_nothing(
    client: TestClient, auth: dict[str, str], settings: Settings
) -> None:
    """Another process (a CLI, a backup) holds SQLite's write lock past the busy timeout: the write is a 503
    problem with Retry-After, rolled back whole; reads go on meanwhile; the same request sent again is kept."""

    with sqlite_write_lock_held(client, settings):
        refused = record(client, auth, "locked-out", [("offers", "email", "grant")])
        assert refused.status_code == 503, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["type"] == "/problems/database-busy"
        question = {"subject": "locked-out", "purpose": "offers", "channel": "email"}
        check = client.get("/v1/consents/check", params=question, headers=auth)
        assert check.status_code == 200 and check.json()["reason"] == "unknown_subject"
    kept = record(client, auth, "locked-out", [("offers", "email", "grant")])
    assert kept.status_code == 201, kept.text
    events, _ = run(client, _ledger_and_projection, "locked-out")
    assert [e["seq"] for e in events] == [1]
    assert client.get("/problems/database-busy").status_code == 200


def test_only_a_busy_database_is_a_busy_error() -> None:
    """The driver's error, raised `from` it, or wrapped by Tortoise: busy. An error raised while handling one, or
    any other driver error: not busy (a 500, logged)."""
    locked = sqlite3.OperationalError("database is locked")
    assert is_busy_error(locked) and is_busy_error(OperationalError(locked))
    assert is_busy_error(asyncpg.exceptions.DeadlockDetectedError("deadlock detected"))
    try:
        raise DatabaseBusy.now() from OperationalError(locked)
    except DatabaseBusy as exc:
        assert is_busy_error(exc)
    try:
        try:
            raise OperationalError(locked)
        except OperationalError:
            raise KeyError("a defect in the handler") from None
    except KeyError as exc:
        assert exc.__context__ is not None and not is_busy_error(exc)
    assert not is_busy_error(OperationalError(sqlite3.OperationalError("no such table: subjects")))
    assert not is_busy_error(asyncpg.exceptions.UniqueViolationError("duplicate key"))


def test_the_same_new_ui_snapshot_recorded_at_once_by_many_is_stored_once(
    client: TestClient, auth: dict[str, str]
) -> None:
    """Twenty records citing a text shown for the first time (a new banner text under load), at once: every one is
    kept, and the text is stored once. Reading then inserting let two of them collide on the key."""
    shown = {"kind": "banner", "content": "<p>New banner text, shown for the first time.</p>"}

    def write(i: int) -> int:
        return record(client, auth, f"first-view-{i}", [("offers", "email", "grant")], ui_snapshot=shown).status_code

    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(write, range(20)))
    assert statuses == [201] * 20

    async def stored() -> tuple[set[str | None], list[str]]:
        events = await ConsentEvent.filter(subject__ref__startswith="first-view-").values("ui_snapshot_sha256")
        snapshots = await UISnapshot.all().values("sha256")
        return {row["ui_snapshot_sha256"] for row in events}, [row["sha256"] for row in snapshots]

    cited, snapshots = run(client, stored)
    assert len(snapshots) == 1 and cited == set(snapshots)  # stored once, cited by all twenty
