"""`python -m server ledger verify` as a real subprocess against the test database: a clean ledger passes, and
every kind of tampering with the stored rows (done with raw SQL, as an attacker with database access would) is
detected and named (invariants 1, 3 and 4, docs/design.md)."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import asyncpg
import pytest
from starlette.testclient import TestClient

from server.ledger.chain import body_hash
from server.settings import Settings
from tests.helpers.ledger import (
    SUBJECT_A,
    assert_detected,
    broken_lines,
    disable_append_only,
    ledger_command,
    seed,
    verify,
)
from tests.helpers.sql import sql

DB_ERRORS = (sqlite3.DatabaseError, asyncpg.PostgresError)


# ---------------------------------------------------------------- fixtures


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


def test_a_verifier_with_another_public_url_verifies_the_log_under_its_stored_id(
    ledger: Settings, tmp_path: Path
) -> None:
    """The log's id is stored when the log is created (invariant 27, docs/design.md): a checkpoint signed and a
    verification run under another PUBLIC_URL both use it. When the id was derived from PUBLIC_URL, a verification
    with another one reported every checkpoint as signed for another log."""
    served = {"PUBLIC_URL": "https://consent.example"}
    assert ledger_command(ledger, tmp_path, "checkpoint", **served).returncode == 0
    for url in ("https://consent.example", "http://127.0.0.1:9999"):
        verified = ledger_command(ledger, tmp_path, "verify", PUBLIC_URL=url)
        assert verified.returncode == 0 and broken_lines(verified) == [], verified.stdout
        assert f"transparency log id: {ledger.issuer}" in verified.stdout, verified.stdout


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
    """The hash algorithm is public (invariant 4, docs/design.md): an attacker can forge a chain-valid event and
    move the head. The state projection, not written by the attacker, still gives it away."""
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
