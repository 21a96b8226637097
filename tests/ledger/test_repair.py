"""`python -m server ledger repair` as a real subprocess: what is derived from the ledger (the state projection, and on
PostgreSQL the check's read model) is rewritten from a replay where someone changed it, the checks answer what the
ledger says again, the audience change feed hands the corrected answers to a marketing system that already synced
the wrong ones, and a subject whose chain does not verify is left alone."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from starlette.testclient import TestClient

from server.ledger import repair as repair_module
from server.ledger import verify as verify_module
from server.ledger.append import Decision, RecordRequest
from server.settings import Settings
from server.verbs import operator_name
from tests.databases import asyncpg_dsn, run_sync
from tests.helpers.app import run, services_of
from tests.helpers.audience import Copy
from tests.helpers.checks import check
from tests.helpers.clock import Clock
from tests.helpers.ledger import (
    SUBJECT_A,
    assert_detected,
    broken_lines,
    command_environment,
    disable_append_only,
    ledger_command,
    seed,
    verify,
)
from tests.helpers.sql import sql

PAIRS = [("offers", "email"), ("offers", "sms"), ("offers", "phone")]
STATE_A = f"subject_id = {SUBJECT_A} AND purpose_id = 'offers'"


def repair(settings: Settings, tmp_path: Path) -> tuple[int, str]:
    result = ledger_command(settings, tmp_path, "repair")
    return result.returncode, result.stdout + result.stderr


def repairs_in_bundle(client: TestClient, auth: dict[str, str], ref: str) -> list[dict[str, Any]]:
    """The repairs an auditor sees in the subject's proof bundle (its access log)."""
    response = client.get(f"/v1/subjects/{ref}/proof", headers=auth)
    assert response.status_code == 200, response.text
    log = json.loads(zipfile.ZipFile(io.BytesIO(response.content)).read("access_log.json"))
    return [entry for entry in log if entry["action"] == "ledger_repair"]


def answers(client: TestClient, auth: dict[str, str], ref: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {pair: check(client, auth, ref, *pair) for pair in PAIRS}


@pytest.fixture
def past_ledger(client: TestClient, auth: dict[str, str], settings: Settings, clock: Clock) -> Settings:
    """The ledger of `seed` (tests/helpers/ledger.py), recorded a day ago: older than any cursor the change feed
    hands out now, so that only the repair itself can bring a subject back into a poll."""
    clock.set(datetime.now(UTC) - timedelta(days=1))
    seed(client, auth)
    clock.fixed = None  # real time again
    return settings


@pytest.mark.parametrize(
    "statement",
    [
        f"UPDATE consent_states SET status = 'granted' WHERE {STATE_A} AND channel_id = 'email'",
        f"DELETE FROM consent_states WHERE {STATE_A} AND channel_id = 'email'",
        # a state for a pair the subject never decided on: a grant out of nowhere
        "INSERT INTO consent_states (subject_id, purpose_id, channel_id, status, event_id, policy_version_id, since) "
        "SELECT subject_id, 'offers', 'phone', 'granted', id, policy_version_id, recorded_at FROM consent_events "
        f"WHERE subject_id = {SUBJECT_A} AND seq = 1",
        "UPDATE consent_states SET since = "
        f"(SELECT recorded_at FROM consent_events WHERE subject_id = {SUBJECT_A} AND seq = 1), "
        "policy_version_id = (SELECT min(id) FROM policy_versions WHERE id <> consent_states.policy_version_id) "
        f"WHERE {STATE_A} AND channel_id = 'sms'",
    ],
    ids=["status", "row-deleted", "row-added", "since-and-policy"],
)
def test_a_changed_projection_is_rewritten_from_the_ledger(
    past_ledger: Settings, client: TestClient, auth: dict[str, str], tmp_path: Path, statement: str
) -> None:
    truth = answers(client, auth, "cust-a")
    untouched = answers(client, auth, "cust-b")
    email = Copy(("offers", "email"))
    sql(past_ledger.database_url, statement)
    assert answers(client, auth, "cust-a") != truth
    email.export(client, auth)  # a marketing system syncs the audience as it now (wrongly) reads
    assert email.poll(client, auth) == []  # and hears of nothing more: no decision was recorded
    assert_detected(verify(past_ledger, tmp_path))

    status, output = repair(past_ledger, tmp_path)

    assert status == 0, output
    assert "REPAIRED subject 'cust-a': " in output and "state row(s) rewritten" in output, output
    assert "cust-b" not in output, output
    assert "ledger repair: 2 subjects: 1 repaired, 0 not repairable" in output, output
    assert answers(client, auth, "cust-a") == truth
    assert answers(client, auth, "cust-b") == untouched
    checked = verify(past_ledger, tmp_path)
    assert checked.returncode == 0 and broken_lines(checked) == [], checked.stdout
    # The feed hands the repaired subject to the next poll: the copy equals a fresh export again.
    lines = email.poll(client, auth)
    assert {line["ref"] for line in lines} == {"cust-a"}, lines
    assert email.refs == Copy(("offers", "email")).export(client, auth) == {"cust-b"}
    # Nothing left to do the second time.
    again, output = repair(past_ledger, tmp_path)
    assert again == 0 and "0 repaired" in output, output
    # The auditor sees who repaired what, when, in the subject's proof bundle (once: the second run wrote nothing);
    # the untouched subject has nothing. Last: a bundle signs a checkpoint with the app's key, not the CLI's.
    (entry,) = repairs_in_bundle(client, auth, "cust-a")
    assert entry["actor"] == {"type": "operator", "id": operator_name()}
    assert entry["detail"]["state_rows_rewritten"] >= 1 and entry["detail"]["read_model_recomputed"] is False
    assert datetime.now(UTC) - datetime.fromisoformat(entry["at"]) < timedelta(minutes=5)
    assert repairs_in_bundle(client, auth, "cust-b") == []


@pytest.mark.parametrize("backend", ["postgres"])  # SQLite answers checks from the projection itself
def test_a_changed_check_read_model_is_recomputed(
    past_ledger: Settings, client: TestClient, auth: dict[str, str], tmp_path: Path
) -> None:
    truth = answers(client, auth, "cust-a")
    sql(
        past_ledger.database_url,
        "UPDATE subjects SET check_states = jsonb_set(check_states, ARRAY['offers' || chr(31) || 'email', '0'], "
        "'\"granted\"') WHERE ref = 'cust-a'",
    )
    assert check(client, auth, "cust-a", "offers", "email")["reason"] == "granted"

    status, output = repair(past_ledger, tmp_path)

    assert status == 0, output
    assert "REPAIRED subject 'cust-a': the consent check's read model recomputed" in output, output
    assert "state row" not in output, output
    assert answers(client, auth, "cust-a") == truth
    assert verify(past_ledger, tmp_path).returncode == 0
    assert [entry["detail"] for entry in repairs_in_bundle(client, auth, "cust-a")] == [
        {"state_rows_rewritten": 0, "read_model_recomputed": True}
    ]


def test_a_subject_whose_chain_does_not_verify_is_left_alone(
    past_ledger: Settings, client: TestClient, auth: dict[str, str], tmp_path: Path
) -> None:
    """A replay of a tampered chain proves nothing: the subject is named, nothing of it is written, exit 1."""
    url = past_ledger.database_url
    disable_append_only(url)
    sql(url, f"UPDATE consent_events SET status = 'granted' WHERE subject_id = {SUBJECT_A} AND seq = 3")
    sql(url, f"UPDATE consent_states SET status = 'granted' WHERE {STATE_A} AND channel_id = 'email'")
    before = sql(url, query=f"SELECT status FROM consent_states WHERE {STATE_A} ORDER BY channel_id")

    status, output = repair(past_ledger, tmp_path)

    assert status == 1, output
    assert "NOT REPAIRED subject 'cust-a' seq 3: hash does not match" in output, output
    assert "REPAIRED subject" not in output.replace("NOT REPAIRED subject", ""), output
    assert "ledger repair: 2 subjects: 0 repaired, 1 not repairable" in output, output
    assert sql(url, query=f"SELECT status FROM consent_states WHERE {STATE_A} ORDER BY channel_id") == before


def test_a_clean_ledger_is_left_as_it_is(past_ledger: Settings, tmp_path: Path) -> None:
    status, output = repair(past_ledger, tmp_path)
    assert status == 0, output
    assert "ledger repair: 2 subjects: 0 repaired, 0 not repairable" in output, output
    # Nothing written: the change feed is not sent every subject again.
    assert sql(past_ledger.database_url, query="SELECT count(*) FROM subjects WHERE flags_changed_at IS NOT NULL") == [
        (0,)
    ]


@pytest.mark.parametrize("backend", ["postgres"])  # SQLite: one writer at a time, the repair's lock is the database's
def test_the_repair_waits_for_a_writer_of_the_subject_then_reads_again(
    past_ledger: Settings, client: TestClient, auth: dict[str, str], tmp_path: Path
) -> None:
    """Safe while serving: a writer holds the subject's row (as the ledger does while it records) when the repair
    comes to it, having read the subject as wrong. The repair waits for the lock, then reads again and finds what
    the writer committed, here the projection put right: it writes nothing over it."""
    url = past_ledger.database_url
    truth = answers(client, auth, "cust-a")
    wrong = f"UPDATE consent_states SET status = 'granted' WHERE {STATE_A} AND channel_id = 'email'"
    right = f"UPDATE consent_states SET status = 'withdrawn' WHERE {STATE_A} AND channel_id = 'email'"
    sql(url, wrong)

    async def writer_holding_the_subject() -> tuple[int, str]:
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            async with conn.transaction():
                await conn.execute("SELECT 1 FROM subjects WHERE ref = 'cust-a' FOR UPDATE")
                repair = await asyncio.create_subprocess_exec(
                    *[sys.executable, "-m", "server", "ledger", "repair"],
                    env=command_environment(past_ledger, tmp_path),
                    cwd=tmp_path,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                )
                for _ in range(600):  # until the repair's backend waits for our row lock
                    await conn.execute("SELECT pg_stat_clear_snapshot()")  # else read once a transaction
                    waiting = await conn.fetchval(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    )
                    if waiting or repair.returncode is not None:
                        break
                    await asyncio.sleep(0.05)
                if not waiting:
                    repair.kill()
                    raise AssertionError(f"the repair did not wait for the lock: {await repair.communicate()}")
                await conn.execute(right)
        finally:
            await conn.close()
        output, _ = await asyncio.wait_for(repair.communicate(), 60)
        assert repair.returncode is not None
        return repair.returncode, output.decode()

    status, output = run_sync(writer_holding_the_subject())

    assert status == 0, output
    assert "ledger repair: 2 subjects: 0 repaired, 0 not repairable" in output, output
    assert answers(client, auth, "cust-a") == truth
    assert sql(url, query="SELECT count(*) FROM subjects WHERE flags_changed_at IS NOT NULL") == [(0,)]


def test_a_decision_recorded_during_the_search_is_not_taken_for_tampering(
    past_ledger: Settings, client: TestClient, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The search reads a page of subjects, then their events, without a lock: a decision committed in between
    leaves more events than the head it read. That subject is judged again under its lock, where its chain is
    sound and its projection right: nothing is refused, nothing is written."""
    services = services_of(client)
    read_events = verify_module.load_page
    recorded: list[Any] = []

    async def events_read_after_a_decision(ids: list[Any], conn: Any = None) -> Any:
        if not recorded:
            decision = Decision("offers", "email", "grant")
            request = RecordRequest(
                "cust-a", "privacy-policy/2/fr", [decision], "preference_center", "toggle", "subject", None
            )
            recorded.append(await services.ledger.record(request))
        return await read_events(ids, conn)

    monkeypatch.setattr(verify_module, "load_page", events_read_after_a_decision)  # the search's read, not the lock's
    report = run(client, repair_module.repair_ledger, services.clock, "tests@here")

    assert recorded and report.subjects == 2
    assert report.refused == [] and report.repaired == []
    assert check(client, auth, "cust-a", "offers", "email")["reason"] == "granted"


@pytest.mark.parametrize("backend", ["sqlite"])  # PostgreSQL stores instants, not their text
def test_an_instant_stored_in_another_text_form_is_found_and_rewritten(
    past_ledger: Settings, client: TestClient, auth: dict[str, str], tmp_path: Path
) -> None:
    """SQLite's batch and stream checks compare and cut the stored text of an instant (server.consent.bulk): the
    same instant written as `...T...Z` by a hand edit reads the same through the ORM, but verify names it and
    repair writes it back in the ledger's form."""
    url = past_ledger.database_url
    state_b = "subject_id = (SELECT id FROM subjects WHERE ref = 'cust-b')"
    canonical = sql(url, query=f"SELECT valid_until FROM consent_states WHERE {state_b}")
    assert canonical[0][0].endswith("+00:00"), canonical
    truth = answers(client, auth, "cust-b")
    sql(
        url,
        "UPDATE consent_states SET valid_until = replace(replace(valid_until, ' ', 'T'), '+00:00', 'Z') "
        f"WHERE {state_b}",
    )
    checked = verify(past_ledger, tmp_path)
    assert checked.returncode == 1 and "subject 'cust-b': state of offers/email differs" in checked.stdout, (
        checked.stdout
    )

    status, output = repair(past_ledger, tmp_path)

    assert status == 0 and "REPAIRED subject 'cust-b': 1 state row(s) rewritten" in output, output
    assert sql(url, query=f"SELECT valid_until FROM consent_states WHERE {state_b}") == canonical
    assert answers(client, auth, "cust-b") == truth
