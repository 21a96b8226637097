"""Stream checks answered in worker processes (`STREAM_WORKERS`) answer what single checks answer.

The workers run the same rule as the in-process path, on their own connections (SQLite: read-only; PostgreSQL: one
each), for the catalog and the instant the server hands them. These tests start them (the shared `settings` fixture
turns them off), on both databases.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import psutil
import pytest
from starlette.testclient import TestClient

from server.app import create_app
from server.consent import stream_workers
from server.consent.service import CheckService
from server.models import Subject
from server.settings import Settings
from tests.helpers.api import bearer, confirmed_by_import, record
from tests.helpers.app import run, services_of
from tests.helpers.checks import CASES, PAST
from tests.helpers.clock import Clock
from tests.helpers.processes import access_token, cli, server_env, start_server, wait_ready
from tests.helpers.sql import sql
from tests.ports import free_port

STREAM = {"Content-Type": "application/x-ndjson"}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, stream_workers=2)


def _checks(client: TestClient) -> CheckService:
    checks = services_of(client).checks
    assert checks is not None
    return checks


def _workers_expected(client: TestClient) -> stream_workers.StreamWorkers:
    """The app's two workers."""
    workers = _checks(client).stream_workers
    assert workers is not None and workers.workers == 2
    return workers


def _stream(client: TestClient, auth: dict[str, str], body: bytes) -> bytes:
    response = client.post("/v1/consents/check/stream", content=body, headers={**auth, **STREAM})
    assert response.status_code == 200, response.text
    return response.content


def _in_process(client: TestClient, auth: dict[str, str], body: bytes) -> bytes:
    """The same stream answered without the workers."""
    checks = _checks(client)
    workers, checks.stream_workers = checks.stream_workers, None
    try:
        return _stream(client, auth, body)
    finally:
        checks.stream_workers = workers


def _half_granted(client: TestClient, auth: dict[str, str]) -> tuple[bytes, bytes]:
    """A stream of 3,500 lines (four chunks), half of them granted, and its answers in process."""
    record(client, auth, "a", [("offers", "email", "grant")])
    body = b"".join(
        orjson.dumps({"subject": ("a", "ghost")[i % 2], "purpose": "offers", "channel": "email"}) + b"\n"
        for i in range(3_500)
    )
    expected = _in_process(client, auth, body)
    assert expected.count(b'"allowed":true') == 1_750
    return body, expected


def _single(client: TestClient, auth: dict[str, str], question: dict[str, str]) -> dict[str, Any]:
    response = client.get("/v1/consents/check", params=question, headers=auth)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _flag(ref: str, field: str, value: datetime) -> Any:
    async def apply() -> None:
        await Subject.filter(ref=ref).update(**{field: value})

    return apply


def test_workers_answer_every_reason_as_single_checks(client: TestClient, auth: dict[str, str], clock: Clock) -> None:
    """Every history of the reason table, flags applying now and later, at instants before and after an expiry and
    a material policy version coming into force: the stream's line for each question is the single check's
    answer, and a bad line between them gets its error in its place."""
    workers = _workers_expected(client)
    clock.set(PAST)
    refs = []
    for number, (_, decisions, purpose, channel, _, _) in enumerate(CASES):
        ref = f"case-{number}"
        for decision in decisions:
            assert record(client, auth, ref, [decision], **confirmed_by_import([decision])).status_code == 201
        refs.append((ref, purpose, channel))
    record(client, auth, "granted-v1", [("partners", "email", "grant")], policy="privacy-policy/1/en")
    for ref, field, when in [
        ("erased-now", "erased_at", PAST),
        ("restricted-now", "restricted_at", PAST),
        ("erased-later", "erased_at", PAST + timedelta(days=400)),
        ("restricted-later", "restricted_at", PAST + timedelta(days=400)),
    ]:
        record(client, auth, ref, [("offers", "email", "grant")])
        run(client, _flag(ref, field, when))
        refs.append((ref, "offers", "email"))
    refs += [("granted-v1", "partners", "email"), ("nobody", "offers", "email"), ("nobody", "offers", "post")]
    questions = [{"subject": r, "purpose": p, "channel": c} for r, p, c in refs]
    body_lines = [orjson.dumps(q) for q in questions]
    body_lines.insert(3, b'{"subject": "x", "purpose": "offers"}')  # a bad line between two good ones
    body = b"\n".join(body_lines) + b"\n"
    reasons = set()
    # PAST; after the material privacy-policy v2 came into force; after the grants' 3-year validity ran out.
    for instant in (PAST, datetime(2026, 9, 2, tzinfo=UTC), PAST + timedelta(days=1096)):
        clock.set(instant)
        expected = [_single(client, auth, q) for q in questions]
        reasons |= {answer["reason"] for answer in expected}
        lines = [orjson.loads(line) for line in _stream(client, auth, body).splitlines()]
        assert lines[3] == {
            "line": 4,
            "error": {
                "type": "/problems/invalid-request",
                "title": "The request is not valid",
                "detail": 'each check is {"subject", "purpose", "channel"}, all three and nothing else',
            },
        }
        del lines[3]
        numbers = [n for n in range(1, len(body_lines) + 1) if n != 4]
        assert lines == [{"line": n, **q, **a} for n, q, a in zip(numbers, questions, expected, strict=True)], instant
    assert reasons >= {c[5] for c in CASES} | {"erased", "restricted", "unknown_subject", "expired"}
    assert "reconsent_required" in reasons
    assert len(workers.pids()) == 2
    assert workers.chunks_answered == 3  # one chunk a stream


def test_a_long_stream_through_workers_is_byte_for_byte_the_in_process_one(
    client: TestClient, auth: dict[str, str]
) -> None:
    """Several chunks, with blank lines, bad JSON, a question for an unknown purpose and an over-long line among
    them: the same bytes as the stream answered in process, every line numbered as sent."""
    record(client, auth, "a", [("offers", "email", "grant"), ("offers", "sms", "deny")])
    record(client, auth, "b", [("offers", "email", "withdraw")])
    lines = []
    for i in range(5_500):
        ref = ("a", "b", "ghost")[i % 3]
        lines.append(orjson.dumps({"subject": ref, "purpose": "offers", "channel": ("email", "sms", "post")[i % 3]}))
    lines[10] = b""
    lines[1_500] = b"{not json"
    lines[2_750] = b'{"subject": "a", "purpose": "nope", "channel": "email"}'
    lines[4_000] = b'{"subject": "' + b"x" * (70 * 1024) + b'"}'
    body = b"\n".join(lines) + b"\n"
    workers = _workers_expected(client)
    answered = _stream(client, auth, body)
    assert workers.chunks_answered == 6  # 5,500 lines: five chunks of 1,000 lines and the rest
    assert answered == _in_process(client, auth, body)
    out = [orjson.loads(line) for line in answered.splitlines()]
    assert len(out) == 5_499  # the blank line is not answered
    errors = {line["line"]: line["error"]["type"] for line in out if "error" in line}
    assert errors == {
        1_501: "/problems/malformed-body",
        2_751: "/problems/unknown-purpose",
        4_001: "/problems/invalid-request",
    }
    last = {"subject": "a", "purpose": "offers", "channel": "email"}  # line 5,500
    assert out[-1] == {"line": 5_500, **last, **_single(client, auth, last)}
    assert out[-1]["reason"] == "granted"


def test_a_worker_that_dies_costs_no_answer(
    client: TestClient, auth: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """A worker killed before a stream breaks the pool: that stream is still answered in full (in process), and
    a new pool answers a stream once RESTART_AFTER_S has passed."""
    workers = _workers_expected(client)
    body, expected = _half_granted(client, auth)
    assert _stream(client, auth, body) == expected  # the pool is up and answering
    before = workers.pids()
    pool = workers._pool
    os.kill(before[0], signal.SIGKILL)
    # The executor's manager thread marks the pool broken when it sees the death (within milliseconds); until then
    # the surviving worker could still take a chunk.
    deadline = time.monotonic() + 10
    while not getattr(pool, "_broken", False) and time.monotonic() < deadline:
        time.sleep(0.01)
    answered = workers.chunks_answered
    with caplog.at_level(logging.WARNING, logger="server.consent.stream_workers"):
        assert _stream(client, auth, body) == expected
    assert "stream worker processes failed" in caplog.text
    assert workers.pids() == []  # dropped; not replaced before RESTART_AFTER_S
    assert _stream(client, auth, body) == expected
    assert workers.pids() == []
    assert workers.chunks_answered == answered
    workers._restart_at = time.monotonic()  # as if RESTART_AFTER_S had passed
    assert _stream(client, auth, body) == expected
    assert workers.chunks_answered == answered + 4
    after = workers.pids()
    assert len(after) == 2 and not set(after) & set(before)


@pytest.mark.parametrize("backend", ["sqlite"])  # the pool's pipes, whatever the database
def test_the_pipes_to_and_from_the_workers_hold_several_chunks(client: TestClient, auth: dict[str, str]) -> None:
    """A chunk's answers (~250 KB) go back through a pipe of 1 MiB, not Linux's 64 KiB, so that a worker writes them
    without waiting for the server to read each part (`stream_workers._widen_pipes`)."""
    workers = _workers_expected(client)
    body = b"".join(
        orjson.dumps({"subject": f"s{i}", "purpose": "offers", "channel": "email"}) + b"\n" for i in range(10)
    )
    assert _stream(client, auth, body) == _in_process(client, auth, body)
    pool: Any = workers._pool
    for queue in (pool._call_queue, pool._result_queue):
        assert fcntl.fcntl(queue._reader.fileno(), fcntl.F_GETPIPE_SZ) == stream_workers.PIPE_BYTES == 1 << 20


def test_a_worker_answers_without_the_orm_or_the_web_stack(
    client: TestClient, auth: dict[str, str], backend: str
) -> None:
    """A worker imports what a chunk needs (the check rule, the reader, the catalogue snapshot, and on PostgreSQL
    its driver), not Tortoise or Starlette: about 25 MB of memory less in each, for the life of the server."""
    workers = _workers_expected(client)
    body = b"".join(
        orjson.dumps({"subject": f"s{i}", "purpose": "offers", "channel": "email"}) + b"\n" for i in range(2_500)
    )
    assert _stream(client, auth, body) == _in_process(client, auth, body)
    assert workers.chunks_answered >= 2
    assert workers._pool is not None
    loaded = "sorted({m.split('.')[0] for m in __import__('sys').modules} & {'tortoise', 'asyncpg', 'starlette'})"
    driver = ["asyncpg"] if backend == "postgres" else []
    for _ in range(4):  # whichever worker takes the job
        assert workers._pool.submit(eval, loaded).result(timeout=30) == driver


@pytest.mark.parametrize("backend", ["postgres"])
def test_workers_whose_database_connections_were_ended_connect_again(
    client: TestClient,
    auth: dict[str, str],
    settings: Settings,
    postgres_template: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An operator ends the workers' backends (as a PostgreSQL restart would): the next stream is answered by the
    workers, which connect again. While the database takes no new connection, their chunks are answered in process:
    the same answers, a warning in the log."""
    workers = _workers_expected(client)
    body, expected = _half_granted(client, auth)
    database = urlsplit(settings.database_url).path.lstrip("/")
    end_workers = (
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        f"WHERE application_name = '{stream_workers.APPLICATION_NAME}' AND datname = current_database()"
    )
    assert _stream(client, auth, body) == expected
    connected = (
        "SELECT count(*) FROM pg_stat_activity "
        f"WHERE application_name = '{stream_workers.APPLICATION_NAME}' AND datname = current_database()"
    )
    deadline = time.monotonic() + 30  # each connects as it starts; one may still be starting
    while sql(settings.database_url, query=connected) != [(2,)] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sql(settings.database_url, query=end_workers) == [(2,)]
    with caplog.at_level(logging.WARNING, logger="server.consent.stream_workers"):
        assert _stream(client, auth, body) == expected
    assert workers.chunks_answered == 8 and "could not read" not in caplog.text
    # The backends are ended again, and the database refuses new connections: the workers cannot read.
    # (Ended first: the workers connect again only when a chunk comes. One worker may have taken every chunk.)
    assert sql(settings.database_url, query=end_workers) in ([(1,)], [(2,)])
    admin = postgres_template.admin_url
    sql(admin, f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
    try:
        with caplog.at_level(logging.WARNING, logger="server.consent.stream_workers"):
            assert _stream(client, auth, body) == expected
    finally:
        sql(admin, f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
    assert workers.chunks_answered == 8
    assert "a stream worker could not read a chunk" in caplog.text and "not currently accepting" in caplog.text
    assert len(workers.pids()) == 2  # the pool is not broken: the same workers answer once they can connect
    assert _stream(client, auth, body) == expected
    assert workers.chunks_answered == 12


def test_over_real_http_a_body_cut_anywhere_gets_the_same_answers(sqlite_template: Any, tmp_path: Path) -> None:
    """Two real servers on one database, with workers and without. The same body, sent whole and in small parts
    (a line cut in two, an over-long line cut in three, CRLF, blank lines, a last line without newline), gets
    the same bytes from both, however it arrives. Then the server with workers is killed (SIGKILL runs no
    shutdown): its workers see it gone and end within seconds."""
    url, name = sqlite_template.new()
    servers = []
    try:
        env = server_env(url, tmp_path, free_port())
        created = cli(env, tmp_path, "clients", "create", "--name", "t", "--scopes", "consent:check consent:write")
        assert created.returncode == 0, created.stdout + created.stderr
        credentials = orjson.loads(created.stdout)
        for workers in ("2", "0"):
            port = free_port()
            server_env_ = {**server_env(url, tmp_path, port), "STREAM_WORKERS": workers}
            servers.append(start_server(server_env_, tmp_path, f"workers-{workers}"))
        for server in servers:
            wait_ready(server.base_url, server.process, server.output)
        with_workers, in_process = servers
        deadline = time.monotonic() + 30
        while len(workers_ := _spawned(with_workers.process.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(workers_) == 2 and _spawned(in_process.process.pid) == []
        headers = {}
        for server in servers:  # each server its own issuer and keys
            token = access_token(server.base_url, credentials["client_id"], credentials["client_secret"])
            headers[server.base_url] = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"}
        body = {
            "policy": {"document": "privacy-policy", "version": "2", "lang": "fr"},
            "decisions": [{"purpose": "offers", "channel": "email", "action": "grant"}],
        }
        granted = httpx.post(
            f"{in_process.base_url}/v1/subjects/a/consents",
            json=body,
            headers={**headers[in_process.base_url], "Content-Type": "application/json"},
        )
        assert granted.status_code == 201, granted.text
        lines = [
            orjson.dumps({"subject": ("a", "b")[i % 2], "purpose": "offers", "channel": "email"}) for i in range(2_500)
        ]
        lines[7] += b"\r"
        lines[8] = b""
        lines[1_200] = b'{"subject": "' + b"x" * (70 * 1024) + b'"}'
        whole = b"\n".join(lines)  # the last line has no newline

        def parts() -> Any:
            for start in range(0, len(whole), 997):
                time.sleep(0.0005)  # each part its own read on the server's side
                yield whole[start : start + 997]

        answers = []
        for server, content in ((with_workers, whole), (with_workers, parts()), (in_process, parts())):
            answer = httpx.post(
                f"{server.base_url}/v1/consents/check/stream",
                content=content,
                headers=headers[server.base_url],
                timeout=60,
            )
            assert answer.status_code == 200, answer.text
            answers.append(answer.content)
        assert answers[0] == answers[1] == answers[2]
        out = [orjson.loads(line) for line in answers[0].splitlines()]
        assert len(out) == 2_499  # the blank line is not answered
        assert {line["line"]: line["error"]["detail"] for line in out if "error" in line} == {
            1_201: f"line longer than {64 * 1024} bytes"
        }
        assert (out[7]["line"], out[7]["subject"], out[7]["reason"]) == (8, "b", "unknown_subject")  # CRLF
        assert out[-1]["line"] == 2_500 and out[0]["allowed"] is True
    finally:
        for server in servers:
            server.stop()  # SIGKILL
        sqlite_template.drop(name)
    deadline = time.monotonic() + 15
    while any(worker.is_running() and worker.status() != psutil.STATUS_ZOMBIE for worker in workers_):
        assert time.monotonic() < deadline, [worker.pid for worker in workers_ if worker.is_running()]
        time.sleep(0.1)


def test_workers_of_the_consent_ledger_command_load_no_orm(sqlite_template: Any, tmp_path: Path) -> None:
    """`spawn` runs the command's script again in each worker: started as `consent-ledger serve`, the workers
    still load only what a chunk needs. Read from their memory maps: orjson's and sqlite3's libraries, not asyncpg's
    (which the server's modules load with the ORM)."""
    script = Path(sys.executable).parent / "consent-ledger"
    assert script.is_file(), "pip install -e . writes the command (scripts/setup)"
    url, name = sqlite_template.new()
    env = {**server_env(url, tmp_path, free_port()), "STREAM_WORKERS": "2"}
    created = cli(env, tmp_path, "clients", "create", "--name", "t", "--scopes", "consent:check")
    assert created.returncode == 0, created.stdout + created.stderr
    credentials = orjson.loads(created.stdout)
    log = tmp_path / "script.log"
    with log.open("wb") as output:
        process = subprocess.Popen([str(script), "serve"], env=env, cwd=tmp_path, stdout=output, stderr=output)
    try:
        base_url = env["PUBLIC_URL"]
        wait_ready(base_url, process, lambda: log.read_text(errors="replace"))
        token = access_token(base_url, credentials["client_id"], credentials["client_secret"])
        body = b"".join(
            orjson.dumps({"subject": f"s{i}", "purpose": "offers", "channel": "email"}) + b"\n" for i in range(2_500)
        )
        answer = httpx.post(
            f"{base_url}/v1/consents/check/stream",
            content=body,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"},
            timeout=60,
        )
        assert answer.status_code == 200 and answer.content.count(b"\n") == 2_500
        workers = _spawned(process.pid)
        assert len(workers) == 2
        for worker in workers:
            # A worker that took no chunk may still be starting: its initializer opens its SQLite connection last.
            deadline = time.monotonic() + 30
            while not {"orjson", "_sqlite3"} <= (libraries := _libraries(worker)) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert {"orjson", "_sqlite3"} <= libraries, libraries
            assert not {library for library in libraries if "asyncpg" in library or library == "protocol"}, libraries
    finally:
        process.terminate()
        process.wait(timeout=20)
        sqlite_template.drop(name)


def _libraries(process: psutil.Process) -> set[str]:
    """The shared libraries a process has mapped, by name (`_sqlite3`, `orjson`, asyncpg's `protocol`...)."""
    return {Path(m.path).name.split(".")[0] for m in process.memory_maps() if m.path.endswith(".so")}


def _spawned(pid: int) -> list[psutil.Process]:
    """The server's stream workers (multiprocessing's resource tracker aside)."""
    children = psutil.Process(pid).children()
    return [child for child in children if "spawn_main" in " ".join(child.cmdline())]


class _NoProcesses:
    """A process pool on a machine that cannot start another process (fork/spawn fails with EAGAIN)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    def shutdown(self, *args: Any, **kwargs: Any) -> None:
        pass


def test_a_server_that_cannot_start_workers_still_answers_streams(
    settings: Settings, clock: Clock, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(stream_workers, "ProcessPoolExecutor", _NoProcesses)
    app = create_app(settings, clock=clock)
    with (
        caplog.at_level(logging.WARNING, logger="server.consent.stream_workers"),
        TestClient(app, raise_server_exceptions=False) as client,
    ):
        auth = bearer(client)
        record(client, auth, "a", [("offers", "email", "grant")])
        body = b"".join(
            orjson.dumps({"subject": ("a", "ghost")[i % 2], "purpose": "offers", "channel": "email"}) + b"\n"
            for i in range(2_500)
        )
        answered = _stream(client, auth, body)
        assert answered == _in_process(client, auth, body) and answered.count(b'"allowed":true') == 1_250
        workers = _checks(client).stream_workers
        assert workers is not None and workers.pids() == []
    assert "stream worker processes could not start" in caplog.text
