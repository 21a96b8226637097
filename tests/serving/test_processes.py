"""Several server processes on one port: `python -m server serve --workers 2` (two processes answer, the
background jobs run in one), and `server.asgi:create` under `uvicorn --factory`."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.helpers.processes import Server, access_token, cli, new_client, server_env, start_server, wait_ready
from tests.ports import free_port

pytestmark = pytest.mark.slow


def answering_pid(workers: list[psutil.Process], port: int, client_port: int) -> int | None:
    """The worker process holding the server side of the connection from `client_port`."""
    for worker in workers:
        for conn in worker.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == port and conn.raddr and conn.raddr.port == client_port:
                return worker.pid
    return None


def listening(processes: list[psutil.Process], port: int) -> list[psutil.Process]:
    """Those of `processes` that listen on `port`: the server's workers (a dead one, not yet reaped, is not)."""
    found = []
    for process in processes:
        with contextlib.suppress(psutil.Error):
            if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in process.net_connections("tcp")):
                found.append(process)
    return found


def job_pids(server: Server, job: str) -> list[int]:
    """The pids of the processes that started `job`, in order, from their log lines."""
    lines = server.log.read_text(errors="replace").splitlines()
    return [json.loads(line)["pid"] for line in lines if f'"running job {job} ' in line]


def header_cut(port: int) -> bool:
    """Whether a request whose header never ends is answered 408 within 3 s (HTTP_HEADER_TIMEOUT_SECONDS=1)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    opened = time.monotonic()
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")  # and nothing more
        answer = sock.recv(65536)
    finally:
        sock.close()
    return answer.startswith(b"HTTP/1.1 408 ") and time.monotonic() - opened < 3


def pids_answering(server: Server, port: int, workers: list[psutil.Process]) -> set[int]:
    """The worker processes that answer requests on connections kept open, until two have (at most 200 tries)."""
    seen: set[int] = set()
    held = []
    try:
        for _ in range(200):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            held.append(sock)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
            pid = answering_pid(workers, port, sock.getsockname()[1])
            assert pid is not None, "no worker holds the connection"
            seen.add(pid)
            if len(seen) == 2:
                break
    finally:
        for sock in held:
            sock.close()
    return seen


def test_serve_with_two_workers_answers_from_two_processes_and_runs_each_job_in_one(
    database_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **server_env(database_url, tmp_path, port),
        "CHECKPOINT_INTERVAL_SECONDS": "1",
        "HTTP_HEADER_TIMEOUT_SECONDS": "1",
        "BACKGROUND_LEASE_SECONDS": "2",
    }
    credentials = new_client(env, tmp_path, "consent:write proof:read")
    server = start_server(env, tmp_path, "workers", [sys.executable, "-m", "server", "serve", "--workers", "2"])
    try:
        wait_ready(server.base_url, server.process, server.output, timeout=60)
        supervisor = psutil.Process(server.process.pid)
        deadline = time.monotonic() + 30
        while len(workers := listening(supervisor.children(), port)) < 2:
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.1)
        assert len(workers) == 2, [p.cmdline() for p in supervisor.children()]
        assert pids_answering(server, port, workers) == {w.pid for w in workers}
        assert header_cut(port), "the workers serve with the header time limit"

        token = access_token(server.base_url, credentials["client_id"], credentials["client_secret"])
        body = {
            "policy": {"document": "privacy-policy", "version": "2", "lang": "en"},
            "decisions": [{"purpose": "offers", "channel": "email", "action": "grant"}],
        }
        for n in range(4):
            answer = httpx.post(
                f"{server.base_url}/v1/subjects/cust-{n}/consents",
                json=body,
                headers={"Authorization": f"Bearer {token}"},
                timeout=10,
            )
            assert answer.status_code == 201, answer.text
        deadline = time.monotonic() + 20
        while httpx.get(f"{server.base_url}/v1/ledger/checkpoints/latest", timeout=5).json().get("tree_size") != 4:
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.2)
        leaders = job_pids(server, "checkpoints")
        assert len(leaders) == 1 and leaders[0] in {w.pid for w in workers}, server.output()
        assert job_pids(server, "recipient-deliveries") == leaders

        # The worker running the jobs is killed: another worker takes them over (the survivor, or the new worker the
        # supervisor starts, whichever reaches the expired lease first), and the supervisor starts a new worker.
        os.kill(leaders[0], signal.SIGKILL)
        deadline = time.monotonic() + 2 + 2 / 3 + 5  # the lease, a round, and a loaded machine's slack
        while len(job_pids(server, "checkpoints")) < 2:
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.1)
        successor = job_pids(server, "checkpoints")[1]
        assert successor != leaders[0], server.output()
        while len(now := listening(supervisor.children(), port)) < 2:
            assert time.monotonic() < deadline + 20, server.output()
            time.sleep(0.1)
        assert successor in {w.pid for w in now}, "the jobs run in a living worker"
    finally:
        children = psutil.Process(server.process.pid).children() if server.process.poll() is None else []
        server.stop()
        for child in children:  # the workers, if the supervisor left them (SIGKILL runs no shutdown)
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()


def test_serve_with_two_workers_refuses_an_unmigrated_database_once(tmp_path: Path) -> None:
    """The supervisor checks the migrations before it starts any worker: exit 3, the reason said once."""
    env = server_env(f"sqlite://{tmp_path / 'empty.sqlite3'}", tmp_path, free_port())
    started = time.monotonic()
    refused = cli(env, tmp_path, "serve", "--workers", "2")
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert refused.stderr.count("run `python -m server migrate` first") == 1, refused.stderr
    assert time.monotonic() - started < 30


def test_the_factory_serves_under_uvicorn_with_the_header_time_limit(sqlite_template: object, tmp_path: Path) -> None:
    url, _ = sqlite_template.new()  # type: ignore[attr-defined]
    port = free_port()
    env = {**server_env(url, tmp_path, port), "HTTP_HEADER_TIMEOUT_SECONDS": "1"}
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "server.asgi:create",
        "--factory",
        "--http",
        "server.serving:HeaderTimeoutProtocol",
        "--port",
        str(port),
    ]
    server = start_server(env, tmp_path, "factory", command)
    try:
        wait_ready(server.base_url, server.process, server.output, timeout=60)
        assert httpx.get(f"{server.base_url}/v1/policies", timeout=5).status_code == 200
        assert header_cut(port)
        assert '"logger":"server.access"' in server.log.read_text(errors="replace"), "the app's JSON logs"
    finally:
        server.stop()
