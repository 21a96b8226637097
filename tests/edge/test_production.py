"""The production shape, end to end: two server processes (`python -m server serve --workers 2`) on one PostgreSQL
database, behind a real nginx configured as `docs/operations.md` says, trusting only nginx (`FORWARDED_ALLOW_IPS`).

- 40 visitors on 40 networks (sockets bound to 127.0.N.1) make 40 banner choices through nginx: every one is
  recorded, each with its own truncated address.
- Keyed API writes (`Idempotency-Key`) go through nginx while the test kills the database backends again and
  again: no answer is a 5xx other than 503, a client that sends again with its key until it is answered ends with
  exactly one event per write, and nothing acknowledged is lost.
- A keyed write in flight when every server process is SIGKILLed (nginx answers 502: the client cannot know the
  outcome), sent again with its key once the server is back, makes exactly one event.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil
import pytest

from tests.helpers.banner import record_over_http
from tests.helpers.nginx import Nginx, Ports, start_nginx
from tests.helpers.processes import Server, access_token, cli, server_env, start_server, wait_ready
from tests.helpers.sql import sql, terminate_backends
from tests.ports import free_port

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("backend", ["postgres"])]

VISITORS = 40
WORKERS = 2
WRITERS = 4
WRITES_PER_WRITER = 12
# What a keyed write may answer before it is carried out: the database lost (503), the first sending still in
# flight (409), nginx finding no server process (502, only while the processes are down).
SEND_AGAIN = {503, 409}


def grant(purpose: str = "offers") -> dict[str, Any]:
    return {
        "policy": {"document": "privacy-policy", "version": "2", "lang": "en"},
        "decisions": [{"purpose": purpose, "channel": "email", "action": "grant"}],
    }


@dataclass
class Production:
    env: dict[str, str]
    cwd: Path
    origin: str  # PUBLIC_URL: nginx's plain listener
    database_url: str
    credentials: dict[str, str]
    server: Server = field(init=False)
    nginx: Nginx = field(init=False)
    token: str = ""

    def visitor(self, network: int) -> httpx.Client:
        transport = httpx.HTTPTransport(local_address=f"127.0.{network}.1", verify=False)
        return httpx.Client(base_url=self.nginx.https_url, transport=transport, timeout=30)

    def api(self) -> httpx.Client:
        """An API client of the marketing system, through nginx."""
        headers = {"Authorization": f"Bearer {self.token}"}
        transport = httpx.HTTPTransport(verify=False)  # nginx's certificate is the test's own, self-signed
        return httpx.Client(base_url=self.nginx.https_url, headers=headers, transport=transport, timeout=30)

    def start(self) -> None:
        command = [sys.executable, "-m", "server", "serve", "--workers", str(WORKERS)]
        self.server = start_server(self.env, self.cwd, f"server-{time.monotonic_ns()}", command)
        self.server.base_url = f"http://127.0.0.1:{self.env['PORT']}"
        wait_ready(self.server.base_url, self.server.process, self.server.output, timeout=60)
        deadline = time.monotonic() + 60
        while self.server.output().count("Application startup complete.") < WORKERS:
            assert time.monotonic() < deadline, self.server.output()
            time.sleep(0.1)
        self.token = access_token(
            self.server.base_url, self.credentials["client_id"], self.credentials["client_secret"]
        )

    def workers(self) -> list[psutil.Process]:
        return psutil.Process(self.server.process.pid).children(recursive=True)

    def kill(self) -> None:
        """SIGKILL the supervisor and every worker at once: a machine losing its power, for the service."""
        if self.server.process.poll() is None:
            processes = [*self.workers(), psutil.Process(self.server.process.pid)]
            for process in processes:
                with contextlib.suppress(psutil.Error):
                    process.send_signal(signal.SIGKILL)
            psutil.wait_procs(processes, timeout=10)
        self.server.stop()

    def events(self, ref: str) -> list[str]:
        rows = sql(
            self.database_url,
            query=f"SELECT e.id FROM consent_events e JOIN subjects s ON s.id = e.subject_id WHERE s.ref = '{ref}'",
        )
        return [str(row[0]) for row in rows]


@pytest.fixture
def production(database_url: str, tmp_path: Path) -> Iterator[Production]:
    ports = Ports(service=free_port(), http=free_port(), https=free_port(), redirect=free_port())
    origin = f"http://127.0.0.1:{ports.http}"
    env = {
        **server_env(database_url, tmp_path, ports.service),
        "PUBLIC_URL": origin,
        "FORWARDED_ALLOW_IPS": "127.0.0.1",
    }
    created = cli(
        env, tmp_path, "clients", "create", "--name", "prod", "--scopes", "consent:write consent:read consent:check"
    )
    assert created.returncode == 0, created.stderr
    edge = Production(env, tmp_path, origin, database_url, json.loads(created.stdout))
    edge.start()
    try:
        edge.nginx = start_nginx(tmp_path / "nginx", ports, "x-forwarded")
        yield edge
    finally:
        if hasattr(edge, "nginx"):
            edge.nginx.stop()
        edge.kill()


def test_forty_visitors_on_forty_networks_reach_two_processes_and_are_all_recorded(production: Production) -> None:
    recorded = {}
    for network in range(1, VISITORS + 1):
        with production.visitor(network) as http:
            recorded[network] = record_over_http(http, production.origin)
    with production.api() as api:
        for network, consent_id in recorded.items():
            answer = api.get(f"/v1/subjects/{consent_id}/events")
            assert answer.status_code == 200, answer.text
            addresses = {event["evidence"].get("ip") for event in answer.json()["events"]}
            assert addresses == {f"127.0.{network}.0/24"}, (network, addresses)


@dataclass
class Writes:
    lock: threading.Lock = field(default_factory=threading.Lock)
    statuses: Counter[int] = field(default_factory=Counter)
    wrong: list[str] = field(default_factory=list)
    acknowledged: dict[str, list[str]] = field(default_factory=dict)  # ref -> event ids of its 201


def _keyed_writer(production: Production, writes: Writes, refs: list[str]) -> None:
    """Each ref gets one grant, sent again with the same key until it is answered 201 (as a client should)."""
    with production.api() as api:
        for ref in refs:
            key = f'"{uuid.uuid4()}"'
            for _ in range(200):
                try:
                    answer = api.post(f"/v1/subjects/{ref}/consents", json=grant(), headers={"Idempotency-Key": key})
                except httpx.TransportError as exc:
                    with writes.lock:
                        writes.wrong.append(f"{ref}: no answer {exc!r}")
                    continue
                with writes.lock:
                    writes.statuses[answer.status_code] += 1
                if answer.status_code == 201:
                    with writes.lock:
                        writes.acknowledged[ref] = [event["id"] for event in answer.json()["events"]]
                    break
                if answer.status_code in SEND_AGAIN and "retry-after" in answer.headers:
                    time.sleep(0.05)
                    continue
                with writes.lock:
                    writes.wrong.append(f"{ref}: {answer.status_code} {answer.text[:300]}")
                break


def test_backends_killed_under_keyed_writes_lose_and_double_nothing(production: Production) -> None:
    database = urlsplit(production.database_url).path.lstrip("/")
    refs = [f"prod-{n:03d}" for n in range(WRITERS * WRITES_PER_WRITER)]
    writes = Writes()
    threads = [
        threading.Thread(target=_keyed_writer, args=(production, writes, refs[w::WRITERS]), daemon=True)
        for w in range(WRITERS)
    ]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    for _ in range(6):
        terminate_backends(database)
        time.sleep(0.3)
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a write never came back"
    assert writes.wrong == [], writes.wrong[:5]
    assert set(writes.statuses) <= {201, *SEND_AGAIN}, writes.statuses
    assert sorted(writes.acknowledged) == refs
    for ref in refs:
        # One event per write: a 503 whose commit had in fact happened was answered again from its key.
        assert production.events(ref) == writes.acknowledged[ref], ref


def test_a_keyed_write_cut_by_killing_every_process_makes_one_event(production: Production) -> None:
    ref = "prod-killed"
    key = f'"{uuid.uuid4()}"'
    sql(
        production.database_url,
        "CREATE FUNCTION test_slow_insert() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN PERFORM pg_sleep(3); RETURN NEW; END $$",
        "CREATE TRIGGER test_slow_insert AFTER INSERT ON consent_events "
        "FOR EACH ROW EXECUTE FUNCTION test_slow_insert()",
    )
    answers: list[httpx.Response] = []
    with production.api() as api:
        sending = threading.Thread(
            target=lambda: answers.append(
                api.post(f"/v1/subjects/{ref}/consents", json=grant(), headers={"Idempotency-Key": key})
            )
        )
        sending.start()
        deadline = time.monotonic() + 20
        while not sql(production.database_url, query="SELECT 1 FROM pg_stat_activity WHERE wait_event = 'PgSleep'"):
            assert time.monotonic() < deadline, production.server.output()
            time.sleep(0.05)
        production.kill()
        sending.join(timeout=30)
    assert [answer.status_code for answer in answers] == [502], "nginx: no server answered"
    sql(production.database_url, "DROP TRIGGER test_slow_insert ON consent_events", "DROP FUNCTION test_slow_insert()")

    production.start()
    statuses = []
    with production.api() as api:
        for _ in range(200):
            retry = api.post(f"/v1/subjects/{ref}/consents", json=grant(), headers={"Idempotency-Key": key})
            statuses.append(retry.status_code)
            if retry.status_code not in SEND_AGAIN:
                break
            time.sleep(0.1)
        assert retry.status_code == 201, (statuses, retry.text)
        again = api.post(f"/v1/subjects/{ref}/consents", json=grant(), headers={"Idempotency-Key": key})
        assert again.headers.get("idempotency-replayed") == "true" and again.content == retry.content
    assert production.events(ref) == [event["id"] for event in retry.json()["events"]]
