"""A write whose outcome its client could not see is safe to send again with its Idempotency-Key: the real server
(`python -m server serve`) is killed with SIGKILL in the middle of a keyed write, started again on the same
database, and the write sent again with its key makes exactly one event and answers the write's answer.

Killed before the commit (PostgreSQL made slow by a trigger with pg_sleep): nothing of the write is kept, so the
retry carries it out, once. Killed after the commit, before the answer (the confirmation mail of a double opt-in
hanging on an SMTP server that never speaks): the key was committed with the write, so the retry is answered with
the stored answer and writes nothing."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.processes import Server, access_token, cli, server_env, start_server, wait_ready
from tests.helpers.sql import sql
from tests.ports import free_port

REF = "cust-killed"
KEY = '"5b0d3c1e-7f4e-4d59-a0a6-9e2f3c0b7a11"'


def grant(purpose: str) -> dict[str, Any]:
    return {
        "policy": {"document": "privacy-policy", "version": "2", "lang": "en"},
        "decisions": [{"purpose": purpose, "channel": "email", "action": "grant"}],
    }


def event_ids(database_url: str) -> list[str]:
    rows = sql(
        database_url,
        query=f"SELECT e.id FROM consent_events e JOIN subjects s ON s.id = e.subject_id WHERE s.ref = '{REF}'",
    )
    return [str(row[0]) for row in rows]


def wait_for(condition: Callable[[], bool], what: str, server: Server, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    pytest.fail(f"{what} not seen after {timeout} s\n{server.output()}")


class Sent:
    """One keyed write sent from a thread; what it got back, if anything."""

    def __init__(self, base_url: str, headers: dict[str, str], body: dict[str, Any]) -> None:
        self.answer: httpx.Response | None = None
        self.error: Exception | None = None
        self.thread = threading.Thread(target=self._send, args=(base_url, headers, body))
        self.thread.start()

    def _send(self, base_url: str, headers: dict[str, str], body: dict[str, Any]) -> None:
        try:
            self.answer = httpx.post(f"{base_url}/v1/subjects/{REF}/consents", json=body, headers=headers, timeout=60)
        except httpx.TransportError as exc:
            self.error = exc


@pytest.fixture
def silent_smtp() -> Iterator[int]:
    """An SMTP server that accepts connections and never says a word (a mail stuck in flight)."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    listener.close()


def _client(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    created = cli(env, tmp_path, "clients", "create", "--name", "t", "--scopes", "consent:write consent:read")
    assert created.returncode == 0, created.stderr
    return dict(json.loads(created.stdout))


def _started(
    env: dict[str, str], tmp_path: Path, name: str, credentials: dict[str, str]
) -> tuple[Server, dict[str, str]]:
    server = start_server(env, tmp_path, name)
    wait_ready(server.base_url, server.process, server.output)
    token = access_token(server.base_url, credentials["client_id"], credentials["client_secret"])
    return server, {"Authorization": f"Bearer {token}", "Idempotency-Key": KEY}


@pytest.mark.parametrize("backend", ["postgres"])
def test_a_write_killed_before_its_commit_is_carried_out_once_when_sent_again(
    database_url: str, tmp_path: Path
) -> None:
    env = server_env(database_url, tmp_path, free_port())
    credentials = _client(env, tmp_path)
    # Every event insert now sleeps: the write is in PostgreSQL, not committed, when the server is killed.
    sql(
        database_url,
        "CREATE FUNCTION test_slow_insert() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN PERFORM pg_sleep(3); RETURN NEW; END $$",
        "CREATE TRIGGER test_slow_insert AFTER INSERT ON consent_events "
        "FOR EACH ROW EXECUTE FUNCTION test_slow_insert()",
    )
    first, headers = _started(env, tmp_path, "first", credentials)
    try:
        sent = Sent(first.base_url, headers, grant("offers"))
        wait_for(
            lambda: bool(sql(database_url, query="SELECT 1 FROM pg_stat_activity WHERE wait_event = 'PgSleep'")),
            "the write sleeping in its transaction",
            first,
        )
        first.stop()  # SIGKILL
        sent.thread.join(timeout=30)
        assert sent.answer is None and sent.error is not None, "the client saw no answer"
    finally:
        first.stop()
    sql(database_url, "DROP TRIGGER test_slow_insert ON consent_events", "DROP FUNCTION test_slow_insert()")

    env = server_env(database_url, tmp_path, free_port())
    second, headers = _started(env, tmp_path, "second", credentials)
    try:
        # The killed server's transaction lives on in PostgreSQL until its backend finds the connection gone: until
        # then the key is in flight (409, Retry-After), then the retry carries the write out.
        statuses = []
        with httpx.Client(base_url=second.base_url, headers=headers, timeout=30) as http:
            for _ in range(100):
                retry = http.post(f"/v1/subjects/{REF}/consents", json=grant("offers"))
                statuses.append(retry.status_code)
                if retry.status_code != 409:
                    break
                assert retry.json()["type"] == "/problems/idempotency-key-in-flight"
                time.sleep(float(retry.headers["Retry-After"]) / 5)
            assert retry.status_code == 201, (statuses, retry.text, second.output())
            assert "idempotency-replayed" not in retry.headers  # nothing had been kept: this is the write
            assert event_ids(database_url) == [e["id"] for e in retry.json()["events"]]
            again = http.post(f"/v1/subjects/{REF}/consents", json=grant("offers"))
            assert again.headers["Idempotency-Replayed"] == "true" and again.content == retry.content
        assert len(event_ids(database_url)) == 1
    finally:
        second.stop()


def test_a_write_killed_after_its_commit_is_answered_again_and_not_written_twice(
    database_url: str, tmp_path: Path, silent_smtp: int
) -> None:
    env = server_env(database_url, tmp_path, free_port())
    env |= {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(silent_smtp), "SMTP_STARTTLS": "false"}
    credentials = _client(env, tmp_path)
    first, headers = _started(env, tmp_path, "first", credentials)
    try:
        link = httpx.post(
            f"{first.base_url}/v1/subjects/{REF}/preference-links",
            json={"email": "ana@example.com", "locale": "en"},
            headers={"Authorization": headers["Authorization"]},
            timeout=10,
        )
        assert link.status_code == 200, link.text
        # A double opt-in grant: committed, then its confirmation mail hangs on the silent SMTP server.
        sent = Sent(first.base_url, headers, grant("newsletter"))
        wait_for(lambda: len(event_ids(database_url)) == 1, "the committed grant", first)
        first.stop()  # SIGKILL, between the commit and the answer
        sent.thread.join(timeout=30)
        assert sent.answer is None and sent.error is not None, "the client saw no answer"
    finally:
        first.stop()
    (committed,) = event_ids(database_url)

    env = server_env(database_url, tmp_path, free_port())
    second, headers = _started(env, tmp_path, "second", credentials)
    try:
        with httpx.Client(base_url=second.base_url, headers=headers, timeout=30) as http:
            retry = http.post(f"/v1/subjects/{REF}/consents", json=grant("newsletter"))
        assert retry.status_code == 201, (retry.text, second.output())
        assert retry.headers["Idempotency-Replayed"] == "true"
        answer = retry.json()
        assert [e["id"] for e in answer["events"]] == [committed]
        assert answer["events"][0]["status"] == "pending_confirmation"
        assert answer["receipt"]
        # The answer stored at the commit: no mail had been sent then.
        assert [c["mail"] for c in answer["confirmations"]] == ["not_sent"]
        assert retry.headers["Location"] == f"/v1/subjects/{REF}/events"
        assert event_ids(database_url) == [committed]
    finally:
        second.stop()
