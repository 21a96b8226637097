"""`python -m server ledger verify` as a real subprocess against the test database: a clean ledger passes, and
every kind of tampering with the stored rows (done with raw SQL, as an attacker with database access would) is
detected and named (DESIGN invariants 1, 3 and 4)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import uuid
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from starlette.testclient import TestClient

from server.ledger.chain import body_hash
from server.settings import Settings
from tests.databases import POLICY_DIR, run_sync
from tests.helpers.api import record

# What an attacker runs to get past the append-only triggers of migration 0002.
SQLITE_DROP_TRIGGERS = [
    "DROP TRIGGER consent_events_no_update",
    "DROP TRIGGER consent_events_no_delete",
]
# USER triggers are the append-only ones; ALL also switches off the foreign keys that point at events.
POSTGRES_DISABLE_TRIGGERS = "ALTER TABLE consent_events DISABLE TRIGGER USER"
POSTGRES_DISABLE_ALL_TRIGGERS = "ALTER TABLE consent_events DISABLE TRIGGER ALL"

DB_ERRORS = (sqlite3.DatabaseError, asyncpg.PostgresError)
SUBJECT_A = "(SELECT id FROM subjects WHERE ref = 'cust-a')"


# ---------------------------------------------------------------- helpers


def _is_sqlite(database_url: str) -> bool:
    return database_url.startswith("sqlite://")


def _sqlite_path(database_url: str) -> str:
    return database_url.removeprefix("sqlite://")


def _asyncpg_dsn(database_url: str) -> str:
    parts = urlsplit(database_url)
    return urlunsplit(("postgresql", parts.netloc, parts.path, "", ""))


async def _pg(database_url: str, statements: list[str], query: str | None) -> list[tuple[Any, ...]]:
    conn = await asyncpg.connect(_asyncpg_dsn(database_url))
    try:
        for statement in statements:
            await conn.execute(statement)
        return [tuple(row) for row in await conn.fetch(query)] if query else []
    finally:
        await conn.close()


def sql(database_url: str, *statements: str, query: str | None = None) -> list[tuple[Any, ...]]:
    """Run raw SQL on the test database outside the application (stdlib sqlite3 or asyncpg), then `query`."""
    if _is_sqlite(database_url):
        with closing(sqlite3.connect(_sqlite_path(database_url), timeout=10)) as conn:
            for statement in statements:
                conn.execute(statement)
            conn.commit()
            return list(conn.execute(query).fetchall()) if query else []
    return run_sync(_pg(database_url, list(statements), query))


def disable_append_only(database_url: str, *, foreign_keys_too: bool = False) -> None:
    """What an attacker does first: drop or disable the triggers that refuse UPDATE and DELETE on events.

    The stdlib sqlite3 connection does not enforce foreign keys (PRAGMA foreign_keys is off by default); on
    PostgreSQL, deleting an event a state row points at also needs the foreign key triggers switched off."""
    if _is_sqlite(database_url):
        sql(database_url, *SQLITE_DROP_TRIGGERS)
    else:
        sql(database_url, POSTGRES_DISABLE_ALL_TRIGGERS if foreign_keys_too else POSTGRES_DISABLE_TRIGGERS)


def verify(settings: Settings, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return ledger_command(settings, tmp_path, "verify")


def ledger_command(
    settings: Settings, tmp_path: Path, action: str, **environment: str
) -> subprocess.CompletedProcess[str]:
    """`python -m server ledger <action>` as a subprocess on the database of `settings`."""
    return subprocess.run(
        [sys.executable, "-m", "server", "ledger", action],
        env={**command_environment(settings, tmp_path), **environment},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def command_environment(settings: Settings, tmp_path: Path) -> dict[str, str]:
    """The environment of a `python -m server` subprocess on the database of `settings`."""
    return {
        "DATABASE_URL": settings.database_url,
        "SECRET_KEY": settings.secret_key,
        "DATA_DIR": str(tmp_path / "data"),
        "SIGNING_KEYS_DIR": str(tmp_path / "data" / "signing-keys"),
        "POLICY_DIR": str(POLICY_DIR),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    }


def broken_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.startswith("BROKEN")]


def assert_detected(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    """Exit 1, one broken chain (cust-a's, never the untouched cust-b), naming every `expected` fragment.

    The transparency-log audit may report the same tampering a second time, from the log's side."""
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "FAILED" in result.stdout, output
    lines = [line for line in broken_lines(result) if "subject" in line]
    assert len(lines) == 1, output
    line = lines[0]
    assert "'cust-a'" in line, output
    assert "cust-b" not in output, output
    for fragment in expected:
        assert fragment in line, (fragment, output)
    return line


def seed(client: TestClient, auth: dict[str, str]) -> None:
    """cust-a: seq 1 offers/email grant, seq 2 offers/sms grant, seq 3 offers/email withdraw, seq 4 offers/sms
    withdraw (states point at seq 3 and 4). cust-b: one grant, never touched by the tampering."""
    calls: list[tuple[str, list[tuple[str, str, str]]]] = [
        ("cust-a", [("offers", "email", "grant"), ("offers", "sms", "grant")]),
        ("cust-a", [("offers", "email", "withdraw")]),
        ("cust-a", [("offers", "sms", "withdraw")]),
        ("cust-b", [("offers", "email", "grant")]),
    ]
    for ref, decisions in calls:
        response = record(client, auth, ref, decisions, evidence={"ip": "203.0.113.9"})
        assert response.status_code == 201, response.text


@pytest.fixture
def ledger(client: TestClient, auth: dict[str, str], settings: Settings) -> Settings:
    """The clean ledger of `seed`, written through the API (test_clean_ledger_verifies_ok shows it verifies OK)."""
    seed(client, auth)
    return settings


# ---------------------------------------------------------------- clean ledger


def test_clean_ledger_verifies_ok(client: TestClient, auth: dict[str, str], settings: Settings, tmp_path: Path) -> None:
    empty = verify(settings, tmp_path)
    assert empty.returncode == 0, empty.stdout + empty.stderr
    assert "0 subjects, 0 events: OK" in empty.stdout, empty.stdout

    seed(client, auth)
    result = verify(settings, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert broken_lines(result) == []
    assert "2 subjects, 5 events: OK" in result.stdout, result.stdout


def test_a_verifier_with_another_public_url_is_told_so_not_of_tampering(ledger: Settings, tmp_path: Path) -> None:
    """The log id a checkpoint is signed for comes from PUBLIC_URL. A verification run with another one used to call
    every checkpoint tampered with ("stored fields differ from the signed ones"); it now says whose log they are."""
    served = {"PUBLIC_URL": "https://consent.example"}
    assert ledger_command(ledger, tmp_path, "checkpoint", **served).returncode == 0
    assert ledger_command(ledger, tmp_path, "verify", **served).returncode == 0

    elsewhere = ledger_command(ledger, tmp_path, "verify", PUBLIC_URL="http://127.0.0.1:9999")
    assert elsewhere.returncode == 1, elsewhere.stdout
    assert "stored fields differ" not in elsewhere.stdout and "subject" not in "".join(broken_lines(elsewhere))
    (line,) = broken_lines(elsewhere)
    assert "signed for the log 'https://consent.example" in line and "PUBLIC_URL" in line, line


# ---------------------------------------------------------------- events changed in place


def test_update_is_refused_while_the_trigger_is_there(ledger: Settings, tmp_path: Path) -> None:
    url = ledger.database_url
    with pytest.raises(DB_ERRORS, match="append-only"):
        sql(url, f"UPDATE consent_events SET status = 'refused' WHERE subject_id = {SUBJECT_A} AND seq = 2")
    with pytest.raises(DB_ERRORS, match="append-only"):
        sql(url, f"DELETE FROM consent_events WHERE subject_id = {SUBJECT_A} AND seq = 2")
    assert sql(url, query=f"SELECT status FROM consent_events WHERE subject_id = {SUBJECT_A} AND seq = 2") == [
        ("granted",)
    ]
    assert verify(ledger, tmp_path).returncode == 0


@pytest.mark.parametrize(
    "assignment",
    [
        "status = 'refused'",
        "purpose_id = 'partners'",
        """evidence = '{"ip": "198.51.100.0/24"}'""",
    ],
    ids=["status", "purpose", "evidence"],
)
def test_changed_event_is_detected(ledger: Settings, tmp_path: Path, assignment: str) -> None:
    url = ledger.database_url
    disable_append_only(url)
    sql(url, f"UPDATE consent_events SET {assignment} WHERE subject_id = {SUBJECT_A} AND seq = 2")
    line = assert_detected(verify(ledger, tmp_path), "seq 2")
    assert "hash" in line, line


# ---------------------------------------------------------------- events deleted


def test_deleted_last_event_is_detected(ledger: Settings, tmp_path: Path) -> None:
    url = ledger.database_url
    disable_append_only(url, foreign_keys_too=True)  # the offers/sms state row points at seq 4
    sql(url, f"DELETE FROM consent_events WHERE subject_id = {SUBJECT_A} AND seq = 4")
    assert sql(url, query=f"SELECT count(*) FROM consent_events WHERE subject_id = {SUBJECT_A}") == [(3,)]
    assert_detected(verify(ledger, tmp_path), "seq 4")


def test_deleted_last_event_with_rewound_head_is_detected(ledger: Settings, tmp_path: Path) -> None:
    """The attacker also moves the subject's head back to seq 3: the chain is then self-consistent, but the state
    projection still records the withdrawal the ledger no longer shows."""
    url = ledger.database_url
    disable_append_only(url, foreign_keys_too=True)
    sql(
        url,
        f"DELETE FROM consent_events WHERE subject_id = {SUBJECT_A} AND seq = 4",
        "UPDATE subjects SET last_seq = 3, head_hash = "
        f"(SELECT hash FROM consent_events WHERE subject_id = {SUBJECT_A} AND seq = 3) WHERE ref = 'cust-a'",
    )
    assert_detected(verify(ledger, tmp_path), "offers/sms")


def test_deleted_middle_event_is_a_seq_gap(ledger: Settings, tmp_path: Path) -> None:
    url = ledger.database_url
    # seq 2 is superseded by seq 4 (no state row points at it), but the transparency log's queue does
    disable_append_only(url, foreign_keys_too=True)
    sql(url, f"DELETE FROM consent_events WHERE subject_id = {SUBJECT_A} AND seq = 2")
    line = assert_detected(verify(ledger, tmp_path), "seq 2")
    assert "gap" in line, line


# ---------------------------------------------------------------- events inserted out of band

_COPIED_COLUMNS = (
    "subject_id, purpose_id, channel_id, policy_version_id, touchpoint, method, actor_type, actor_id, "
    "ui_snapshot_sha256, evidence, recorded_at, valid_until"
)


def _insert_after_seq_4(url: str, event_id: str, event_hash: str) -> None:
    """Append a seq 5 'grant' to cust-a, copied from seq 4 and linked to its hash (INSERT needs no trigger off)."""
    sql(
        url,
        f"INSERT INTO consent_events (id, seq, action, status, prev_hash, hash, {_COPIED_COLUMNS}) "
        f"SELECT '{event_id}', 5, 'grant', 'granted', hash, '{event_hash}', {_COPIED_COLUMNS} "
        f"FROM consent_events WHERE subject_id = {SUBJECT_A} AND seq = 4",
    )


def test_inserted_event_with_forged_hash_is_detected(ledger: Settings, tmp_path: Path) -> None:
    url = ledger.database_url
    _insert_after_seq_4(url, str(uuid.uuid4()), "f" * 64)
    line = assert_detected(verify(ledger, tmp_path), "seq 5")
    assert "hash" in line, line


def test_inserted_event_with_recomputed_hash_and_moved_head_is_detected(
    ledger: Settings, client: TestClient, auth: dict[str, str], tmp_path: Path
) -> None:
    """The hash algorithm is public (DESIGN invariant 4): an attacker can forge a chain-valid event and move the
    head. The state projection, not written by the attacker, still gives it away."""
    url = ledger.database_url
    last = client.get("/v1/subjects/cust-a/events", headers=auth).json()["events"][-1]
    assert last["seq"] == 4
    forged = {k: v for k, v in last.items() if k != "hash"}
    forged.update(id=str(uuid.uuid4()), seq=5, action="grant", status="granted", prev_hash=last["hash"])
    forged_hash = body_hash(forged)
    _insert_after_seq_4(url, forged["id"], forged_hash)
    sql(url, f"UPDATE subjects SET last_seq = 5, head_hash = '{forged_hash}' WHERE ref = 'cust-a'")
    assert_detected(verify(ledger, tmp_path), "offers/sms")


# ---------------------------------------------------------------- state projection changed


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE consent_states SET status = 'granted' "
        f"WHERE subject_id = {SUBJECT_A} AND purpose_id = 'offers' AND channel_id = 'email'",
        "UPDATE consent_states SET event_id = "
        f"(SELECT id FROM consent_events WHERE subject_id = {SUBJECT_A} AND seq = 1) "
        f"WHERE subject_id = {SUBJECT_A} AND purpose_id = 'offers' AND channel_id = 'email'",
        f"DELETE FROM consent_states WHERE subject_id = {SUBJECT_A} AND purpose_id = 'offers' AND channel_id = 'email'",
        # an older instant (re-consent rules compare it) and another policy version
        "UPDATE consent_states SET since = "
        f"(SELECT recorded_at FROM consent_events WHERE subject_id = {SUBJECT_A} AND seq = 1) "
        f"WHERE subject_id = {SUBJECT_A} AND purpose_id = 'offers' AND channel_id = 'sms'",
        "UPDATE consent_states SET policy_version_id = "
        "(SELECT min(id) FROM policy_versions WHERE id <> consent_states.policy_version_id) "
        f"WHERE subject_id = {SUBJECT_A} AND purpose_id = 'offers' AND channel_id = 'email'",
    ],
    ids=["status", "event", "row-deleted", "since", "policy"],
)
def test_changed_projection_is_detected(ledger: Settings, tmp_path: Path, statement: str) -> None:
    url = ledger.database_url
    sql(url, statement)
    line = assert_detected(verify(ledger, tmp_path))
    assert "state" in line and "replay" in line, line


# ---------------------------------------------------------------- the consent check's read model changed


@pytest.mark.parametrize("backend", ["postgres"])  # SQLite answers checks from the projection itself
def test_changed_check_read_model_is_detected(
    ledger: Settings, client: TestClient, auth: dict[str, str], tmp_path: Path
) -> None:
    """The check reads `subjects.check_states` on PostgreSQL (server.consent.read_model): an attacker who turns a
    withdrawal into a grant there, without touching the ledger or the projection, changes what marketing tools are
    told. The check shows the forged answer; `ledger verify` names the subject."""
    question = {"subject": "cust-a", "purpose": "offers", "channel": "email"}
    assert client.get("/v1/consents/check", params=question, headers=auth).json()["reason"] == "withdrawn"
    sql(
        ledger.database_url,
        "UPDATE subjects SET check_states = jsonb_set(check_states, ARRAY['offers' || chr(31) || 'email', '0'], "
        "'\"granted\"') WHERE ref = 'cust-a'",
    )
    assert client.get("/v1/consents/check", params=question, headers=auth).json()["reason"] == "granted"
    line = assert_detected(verify(ledger, tmp_path))
    assert "read model" in line, line
