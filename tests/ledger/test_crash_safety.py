"""Invariant 5 (docs/design.md): an acknowledged write is durable, state and event both or neither.

The real server (`python -m server serve`) takes a stream of concurrent writes and is killed with SIGKILL in the
middle of it. Restarted on the same database, it still has every event it answered 201 for, with the same hash,
and `python -m server ledger verify` finds every chain and the state projection intact.
"""

from __future__ import annotations

import re
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.processes import access_token, cli, new_client, server_env, start_server, wait_ready
from tests.ports import free_port

WRITERS = 4
SUBJECTS = 20
WRITE_SECONDS = 1.5
MAX_ACKNOWLEDGED = 400


# ---------------------------------------------------------------- real processes


def all_events(http: httpx.Client, ref: str) -> list[dict[str, Any]]:
    """Every event of `ref`, following `next_cursor` (bounded)."""
    events: list[dict[str, Any]] = []
    url = f"/v1/subjects/{ref}/events?limit=25"
    for _ in range(1000):
        response = http.get(url)
        assert response.status_code == 200, response.text
        page = response.json()
        events += page["events"]
        if not page["next_cursor"]:
            return events
        url = f"/v1/subjects/{ref}/events?limit=25&cursor={page['next_cursor']}"
    pytest.fail(f"more than 1000 pages of events for {ref}")


# ---------------------------------------------------------------- the write stream


@dataclass
class Stream:
    """What the writers saw. Each writer owns its subjects, so its own view of their state is exact."""

    killed: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    acknowledged: dict[str, dict[str, tuple[int, str]]] = field(default_factory=dict)  # ref -> id -> (seq, hash)
    acknowledged_requests: int = 0
    unanswered: int = 0
    refused: list[str] = field(default_factory=list)  # answered, but not 201
    errors_before_kill: list[str] = field(default_factory=list)


def writer(stream: Stream, base_url: str, token: str, refs: list[str]) -> None:
    granted = dict.fromkeys(refs, False)
    headers = {"Authorization": f"Bearer {token}"}
    try:
        with httpx.Client(base_url=base_url, headers=headers, timeout=10) as http:
            for n in range(100_000):
                ref = refs[n % len(refs)]
                action = "withdraw" if granted[ref] else "grant"
                decisions = [{"purpose": "offers", "channel": "email", "action": action}]
                if n % 3 == 0:  # some calls write two events in one transaction
                    decisions.append({"purpose": "offers", "channel": "sms", "action": "grant"})
                body = {"policy": {"document": "privacy-policy", "version": "2", "lang": "en"}, "decisions": decisions}
                try:
                    response = http.post(f"/v1/subjects/{ref}/consents", json=body)
                except httpx.TransportError as exc:
                    with stream.lock:
                        stream.unanswered += 1
                        if not stream.killed.is_set():
                            stream.errors_before_kill.append(f"{ref}: {exc!r}")
                    if stream.killed.is_set():
                        return
                    continue
                if response.status_code != 201:
                    with stream.lock:
                        stream.refused.append(f"{ref} {action}: {response.status_code} {response.text}")
                    continue
                granted[ref] = action == "grant"
                with stream.lock:
                    stream.acknowledged_requests += 1
                    mine = stream.acknowledged.setdefault(ref, {})
                    for event in response.json()["events"]:
                        mine[event["id"]] = (event["seq"], event["hash"])
    except Exception as exc:  # reported by the test thread, never lost in this one
        with stream.lock:
            stream.errors_before_kill.append(f"writer crashed: {exc!r}")


# ---------------------------------------------------------------- the test


@pytest.mark.slow
def test_acknowledged_writes_survive_sigkill(database_url: str, tmp_path: Path) -> None:
    port = free_port()
    env = server_env(database_url, tmp_path, port)
    credentials = new_client(env, tmp_path, "consent:write consent:read")

    stream = Stream()
    refs = [f"crash-{i:02d}" for i in range(SUBJECTS)]
    first = start_server(env, tmp_path, "first")
    threads: list[threading.Thread] = []
    try:
        wait_ready(first.base_url, first.process, first.output)
        token = access_token(first.base_url, credentials["client_id"], credentials["client_secret"])
        threads = [
            threading.Thread(target=writer, args=(stream, first.base_url, token, refs[w::WRITERS]), daemon=True)
            for w in range(WRITERS)
        ]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + WRITE_SECONDS
        while time.monotonic() < deadline and stream.acknowledged_requests < MAX_ACKNOWLEDGED:
            time.sleep(0.02)
        stream.killed.set()
        first.process.send_signal(signal.SIGKILL)  # mid-stream: the writers still have requests in flight
        first.process.wait(timeout=10)
        for thread in threads:
            thread.join(timeout=15)
        assert not any(thread.is_alive() for thread in threads), "a writer did not stop after the kill"
    finally:
        stream.killed.set()
        first.stop()
    log = first.log.read_text(errors="replace")[-4000:]
    assert stream.errors_before_kill == [], (stream.errors_before_kill, log)
    assert stream.refused == [], (stream.refused[:5], log)
    assert stream.acknowledged_requests >= 20, f"only {stream.acknowledged_requests} writes before the kill\n{log}"

    # Restart on the same database (and the same secret and signing keys), on a new port.
    port = free_port()
    env = server_env(database_url, tmp_path, port)
    second = start_server(env, tmp_path, "second")
    try:
        wait_ready(second.base_url, second.process, second.output)
        token = access_token(second.base_url, credentials["client_id"], credentials["client_secret"])
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=second.base_url, headers=headers, timeout=10) as http:
            for ref, acknowledged in sorted(stream.acknowledged.items()):
                events = all_events(http, ref)
                stored = {e["id"]: (e["seq"], e["hash"]) for e in events}
                missing = {i: v for i, v in acknowledged.items() if stored.get(i) != v}
                assert missing == {}, f"{ref}: acknowledged events lost or changed after the crash: {missing}"
                assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), ref
                # Each subject had at most one unanswered call (its writer's last one), of at most two events.
                last_acknowledged = max(seq for seq, _ in acknowledged.values())
                assert len(events) - last_acknowledged <= 2, (ref, len(events), last_acknowledged)
                # The projection answers with the ledger's last offers/email event.
                matrix = http.get(f"/v1/subjects/{ref}/consents")
                assert matrix.status_code == 200, matrix.text
                cell = next(c for c in matrix.json()["consents"] if (c["purpose"], c["channel"]) == ("offers", "email"))
                last_email = [e for e in events if (e["purpose"], e["channel"]) == ("offers", "email")][-1]
                assert (cell["event_id"], cell["status"]) == (last_email["id"], last_email["status"]), ref

        verified = cli(env, tmp_path, "ledger", "verify")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        summary = re.search(r"(\d+) subjects, (\d+) events: OK$", verified.stdout, re.MULTILINE)
        assert re.search(r"transparency log: \d+ entries, \d+ checkpoints: OK$", verified.stdout, re.MULTILINE)
        assert summary is not None, verified.stdout
        acknowledged_events = sum(len(events) for events in stream.acknowledged.values())
        assert int(summary[1]) >= len(stream.acknowledged) and int(summary[2]) >= acknowledged_events, verified.stdout
    finally:
        second.stop()
