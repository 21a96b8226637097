"""PostgreSQL lost under load: the real server (`python -m server serve`) takes writes and checks from several
threads while the test kills its backends (`pg_terminate_backend`) again and again, then closes the database to
every connection for a while. Every request gets an answer, 2xx or 503 with Retry-After (never another 5xx, never a
reset connection); the server answers 2xx again without a restart; every write it acknowledged is in the ledger.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.helpers.processes import Server, access_token, new_client, server_env, start_server, wait_ready
from tests.helpers.sql import admin_sql, terminate_backends
from tests.ledger.test_crash_safety import all_events
from tests.ports import free_port

WRITERS = 4
CHECKERS = 2
KILLS = 6


@dataclass
class Load:
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    statuses: Counter[int] = field(default_factory=Counter)
    wrong: list[str] = field(default_factory=list)  # answers other than 2xx and 503 with Retry-After
    unanswered: list[str] = field(default_factory=list)
    acknowledged: dict[str, set[str]] = field(default_factory=dict)  # ref -> event ids answered 201

    def saw(self, what: str, response: httpx.Response) -> None:
        with self.lock:
            self.statuses[response.status_code] += 1
            if response.status_code == 503:
                problem = response.json()
                if "retry-after" not in response.headers or problem["type"] not in (
                    "/problems/service-unavailable",
                    "/problems/database-busy",
                ):
                    self.wrong.append(f"{what}: 503 {dict(response.headers)} {response.text[:200]}")
            elif response.status_code >= 300:
                self.wrong.append(f"{what}: {response.status_code} {response.text[:300]}")


def _writer(load: Load, base_url: str, token: str, refs: list[str]) -> None:
    granted = dict.fromkeys(refs, False)
    unsure: set[str] = set()  # refs whose last write answered 503
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
        n = 0
        while not load.stop.is_set():
            ref = refs[n % len(refs)]
            n += 1
            action = "withdraw" if granted[ref] else "grant"
            body = {
                "policy": {"document": "privacy-policy", "version": "2", "lang": "en"},
                "decisions": [{"purpose": "offers", "channel": "email", "action": action}],
            }
            try:
                response = http.post(f"/v1/subjects/{ref}/consents", json=body)
            except httpx.TransportError as exc:
                with load.lock:
                    load.unanswered.append(f"write {ref}: {exc!r}")
                continue
            if response.status_code == 422 and ref in unsure:
                # A 503 whose connection was lost during the commit itself: the database kept that write, which
                # the server could not know (Idempotency-Key makes such a retry safe). The writer knows now.
                assert response.json()["type"] == "/problems/invalid-transition", response.text
                granted[ref] = not granted[ref]
                unsure.discard(ref)
                continue
            load.saw(f"write {ref}", response)
            if response.status_code == 503:
                unsure.add(ref)
            if response.status_code == 201:
                unsure.discard(ref)
                granted[ref] = action == "grant"
                with load.lock:
                    load.acknowledged.setdefault(ref, set()).update(e["id"] for e in response.json()["events"])


def _checker(load: Load, base_url: str, token: str, refs: list[str]) -> None:
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
        n = 0
        while not load.stop.is_set():
            ref = refs[n % len(refs)]
            n += 1
            url = f"/v1/consents/check?subject={ref}&purpose=offers&channel=email"
            try:
                response = http.get(url)
            except httpx.TransportError as exc:
                with load.lock:
                    load.unanswered.append(f"check {ref}: {exc!r}")
                continue
            load.saw(f"check {ref}", response)


def _served(database_url: str, tmp_path: Path, **extra: str) -> tuple[Server, str, dict[str, str]]:
    port = free_port()
    env = {**server_env(database_url, tmp_path, port), **extra}
    credentials = new_client(env, tmp_path, "consent:write consent:read consent:check")
    server = start_server(env, tmp_path, "server")
    wait_ready(server.base_url, server.process, server.output)
    token = access_token(server.base_url, credentials["client_id"], credentials["client_secret"])
    return server, token, env


def _under_load(server: Server, token: str, fault: Callable[[], None]) -> Load:
    load = Load()
    refs = [f"fault-{i:02d}" for i in range(WRITERS * 3)]
    threads = [
        threading.Thread(target=_writer, args=(load, server.base_url, token, refs[w::WRITERS]), daemon=True)
        for w in range(WRITERS)
    ] + [
        threading.Thread(target=_checker, args=(load, server.base_url, token, refs), daemon=True)
        for _ in range(CHECKERS)
    ]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        fault()
        time.sleep(0.3)
    finally:
        load.stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a request never came back"
    return load


def _answers_again(server: Server, token: str) -> None:
    """Without a restart, every request succeeds again (after the pool has replaced what was lost)."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=30) as http:
        time.sleep(1)
        for n in range(20):
            body = {
                "policy": {"document": "privacy-policy", "version": "2", "lang": "en"},
                "decisions": [{"purpose": "offers", "channel": "sms", "action": "grant" if n % 2 == 0 else "withdraw"}],
            }
            written = http.post("/v1/subjects/after-the-fault/consents", json=body)
            assert written.status_code == 201, (written.status_code, written.text, server.output())
            checked = http.get("/v1/consents/check?subject=after-the-fault&purpose=offers&channel=sms")
            assert checked.status_code == 200, (checked.status_code, checked.text)
        ready = http.get("/readyz")
        assert ready.status_code == 200, ready.text


def _nothing_acknowledged_lost(server: Server, token: str, load: Load) -> None:
    with httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
        for ref, acknowledged in sorted(load.acknowledged.items()):
            stored = [e["id"] for e in all_events(http, ref)]
            assert acknowledged <= set(stored), f"{ref}: acknowledged events missing: {acknowledged - set(stored)}"
            assert len(stored) == len(set(stored)), ref


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["postgres"])
def test_backends_killed_under_load_answer_503_and_the_server_recovers(database_url: str, tmp_path: Path) -> None:
    database = urlsplit(database_url).path.lstrip("/")
    server, token, _ = _served(database_url, tmp_path)
    try:

        def kill_again_and_again() -> None:
            for _ in range(KILLS):
                terminate_backends(database)
                time.sleep(0.3)

        load = _under_load(server, token, kill_again_and_again)
        log = server.output()
        assert load.unanswered == [], (load.unanswered[:5], log)
        assert load.wrong == [], (load.wrong[:5], log)
        assert load.statuses[201] > 20 and load.statuses[200] > 20, load.statuses
        _answers_again(server, token)
        _nothing_acknowledged_lost(server, token, load)
        assert server.process.poll() is None
    finally:
        server.stop()


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["postgres"])
def test_a_database_closed_to_connections_is_503_until_it_opens_again(database_url: str, tmp_path: Path) -> None:
    database = urlsplit(database_url).path.lstrip("/")
    server, token, _ = _served(database_url, tmp_path)
    try:

        def closed_for_two_seconds() -> None:
            admin_sql(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
            terminate_backends(database)
            time.sleep(2)
            with httpx.Client(base_url=server.base_url, timeout=30) as http:
                ready = http.get("/readyz")
                assert ready.status_code == 503, ready.text
                assert ready.json()["checks"]["database"] != "ok", ready.text
            admin_sql(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')

        try:
            load = _under_load(server, token, closed_for_two_seconds)
        finally:
            admin_sql(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        log = server.output()
        assert load.unanswered == [], (load.unanswered[:5], log)
        assert load.wrong == [], (load.wrong[:5], log)
        assert load.statuses[503] > 0, load.statuses
        _answers_again(server, token)
        _nothing_acknowledged_lost(server, token, load)
    finally:
        server.stop()


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["postgres"])
@pytest.mark.parametrize("workers", ["0", "2"], ids=["in-process", "stream-workers"])
def test_a_stream_check_that_loses_its_database_midway_ends_with_an_error_line(
    database_url: str, tmp_path: Path, workers: str
) -> None:
    """The stream's status (200) and first answers went out before the database was lost: the answer cannot become
    a 503, so its last line is the error, and every line before it is a real answer. With stream worker processes,
    a worker that cannot read hands its chunk back to the server, which meets the same closed database."""
    database = urlsplit(database_url).path.lstrip("/")
    server, token, _ = _served(database_url, tmp_path, STREAM_WORKERS=workers)
    line = b'{"subject": "s", "purpose": "offers", "channel": "email"}\n'

    def body() -> Iterator[bytes]:
        yield line * 1000  # one chunk, answered while the database is up
        time.sleep(1)
        admin_sql(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        terminate_backends(database)
        yield line * 1000  # the next one meets the closed database

    try:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"}
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=60) as http:
            answer = http.post("/v1/consents/check/stream", content=body())
        assert answer.status_code == 200
        lines = [json.loads(text) for text in answer.text.splitlines()]
        assert len(lines) > 1000 and all("allowed" in one for one in lines[:1000]), lines[:2]
        last = lines[-1]
        assert set(last) == {"error"} and last["error"]["type"] == "/problems/service-unavailable", last
        assert all("allowed" in one for one in lines[:-1])
    finally:
        admin_sql(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        server.stop()
