"""The gunicorn command line of docs/operations.md ("Processes and background work"), read from that file and run as
written (on a port of the test's own), with its 2 workers, on SQLite and PostgreSQL: both workers answer, each
background job runs in exactly one of them, a header that never ends is cut, and a forwarded header from a peer
that is not a trusted proxy is ignored (uvicorn's own proxy headers are off: `server.gunicorn_worker`)."""

from __future__ import annotations

import contextlib
import re
import shlex
import signal
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.helpers.processes import access_token, new_client, server_env, start_server, wait_ready
from tests.ports import free_port
from tests.serving.test_processes import header_cut, job_pids, listening, pids_answering

pytestmark = pytest.mark.slow

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
DOCUMENTED_BIND = "127.0.0.1:8000"


def documented_command() -> list[str]:
    """The gunicorn line of "Processes and background work", split as a shell would."""
    text = OPERATIONS.read_text()
    section = text[text.index("## Processes and background work") : text.index("## HTTP limits and timeouts")]
    (line,) = re.findall(r"^    (gunicorn .*)$", section, re.MULTILINE)
    return shlex.split(line)


def test_the_documented_line_names_two_workers_and_the_documented_bind() -> None:
    command = documented_command()
    assert command[command.index("-w") + 1] == "2"
    assert command[command.index("-b") + 1] == DOCUMENTED_BIND


def test_gunicorn_as_documented_serves_with_two_workers_and_runs_each_job_in_one(
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
    command = documented_command()
    command[0] = str(Path(sys.executable).parent / "gunicorn")
    command[command.index(DOCUMENTED_BIND)] = f"127.0.0.1:{port}"
    server = start_server(env, tmp_path, "gunicorn", command)
    master = psutil.Process(server.process.pid)
    try:
        wait_ready(server.base_url, server.process, server.output, timeout=60)
        deadline = time.monotonic() + 30
        while len(workers := listening(master.children(), port)) < 2:
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.1)
        assert len(workers) == 2, [p.cmdline() for p in master.children()]
        assert pids_answering(server, port, workers) == {w.pid for w in workers}
        assert header_cut(port), "the workers serve with the header time limit"

        # From a peer not in FORWARDED_ALLOW_IPS (unset): neither the scheme nor the client it names is believed.
        spoof = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.7", "Forwarded": "for=198.51.100.8"}
        for _ in range(4):  # whichever worker answers
            answer = httpx.get(f"{server.base_url}/healthz", headers=spoof, timeout=5)
            assert answer.status_code == 200
            assert "strict-transport-security" not in answer.headers, "uvicorn believed X-Forwarded-Proto"

        token = access_token(server.base_url, credentials["client_id"], credentials["client_secret"])
        body = {
            "policy": {"document": "privacy-policy", "version": "2", "lang": "en"},
            "decisions": [{"purpose": "offers", "channel": "email", "action": "grant"}],
        }
        for n in range(4):
            answer = httpx.post(
                f"{server.base_url}/v1/subjects/cust-{n}/consents",
                json=body,
                headers={"Authorization": f"Bearer {token}", **spoof},
                timeout=10,
            )
            assert answer.status_code == 201, answer.text
        deadline = time.monotonic() + 20
        while httpx.get(f"{server.base_url}/v1/ledger/checkpoints/latest", timeout=5).json().get("tree_size") != 4:
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.2)
        time.sleep(2)  # a lease round more: a second taker would have started by now
        leaders = job_pids(server, "checkpoints")
        assert len(leaders) == 1 and leaders[0] in {w.pid for w in workers}, server.output()
        assert job_pids(server, "recipient-deliveries") == leaders
        assert job_pids(server, "dsr-reminders") == leaders
    finally:
        children = master.children() if server.process.poll() is None else []
        if server.process.poll() is None:
            server.process.send_signal(signal.SIGTERM)  # gunicorn stops its workers
            with contextlib.suppress(Exception):
                server.process.wait(timeout=15)
        server.stop()
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
