"""Two real server processes on one database: each background job runs in one of them, each notice is delivered
once, and when the one running the jobs is killed (SIGKILL: no shutdown, its leases left as they were) the other
takes them over within the lease (BACKGROUND_LEASE_SECONDS plus a round).

Both processes answer under one PUBLIC_URL, as they would behind one proxy: one issuer, one transparency log."""

from __future__ import annotations

import base64
import json
import signal
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import httpx
import pytest

from tests.helpers.processes import Server, access_token, cli, new_client, server_env, start_server, wait_ready
from tests.helpers.receiver import Receiver
from tests.ports import free_port

pytestmark = pytest.mark.slow

LEASE = 2.0
POLICY = {"document": "privacy-policy", "version": "2", "lang": "en"}


def jti(notice: dict[str, object]) -> str:
    """The notice's id, read from its JWT as a recipient would before it checks the signature."""
    payload = str(notice["body"]).split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["jti"])


def wait_for(condition: Callable[[], bool], within: float, what: str, *servers: Server) -> float:
    """Seconds until `condition()` holds; fails with the servers' logs after `within` seconds."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > within:
            pytest.fail(f"{what}: not within {within} s\n" + "\n".join(s.output() for s in servers))
        time.sleep(0.05)
    return time.monotonic() - started


def jobs_started(server: Server, job: str) -> int:
    return server.log.read_text(errors="replace").count(f"running job {job} ")


def taken_by(server: Server, job: str) -> bool:
    return jobs_started(server, job) == 1


def withdraw(base_url: str, token: str, ref: str) -> None:
    """A grant then its withdrawal: the withdrawal queues one notice to the recipient."""
    for action in ("grant", "withdraw"):
        body = {"policy": POLICY, "decisions": [{"purpose": "offers", "channel": "email", "action": action}]}
        answer = httpx.post(
            f"{base_url}/v1/subjects/{ref}/consents",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=15,
        )
        assert answer.status_code == 201, answer.text


def latest_checkpoint_size(base_url: str) -> int:
    answer = httpx.get(f"{base_url}/v1/ledger/checkpoints/latest", timeout=5)
    return int(answer.json()["tree_size"]) if answer.status_code == 200 else 0


def test_background_jobs_run_in_one_process_and_move_when_it_is_killed(database_url: str, tmp_path: Path) -> None:
    receiver = Receiver()
    first_port, second_port = free_port(), free_port()
    env = {
        **server_env(database_url, tmp_path, first_port),
        "CHECKPOINT_INTERVAL_SECONDS": "1",
        "RECIPIENT_POLL_SECONDS": "1",
        "BACKGROUND_LEASE_SECONDS": str(LEASE),
        "DSR_REMINDER_POLL_SECONDS": "60",
    }
    credentials = new_client(env, tmp_path, "consent:write proof:read")
    added = cli(env, tmp_path, "recipients", "add", "esp", receiver.url)
    assert added.returncode == 0, added.stderr
    servers: list[Server] = []
    try:
        for name, port in (("first", first_port), ("second", second_port)):
            server = start_server({**env, "PORT": str(port)}, tmp_path, name)
            server.base_url = f"http://127.0.0.1:{port}"
            servers.append(server)
            wait_ready(server.base_url, server.process, server.output)
        first, second = servers
        token = access_token(first.base_url, credentials["client_id"], credentials["client_secret"])

        # Changes made through both processes: the one running the deliveries sends every notice, once.
        for n in range(6):
            withdraw((first, second)[n % 2].base_url, token, f"cust-{n}")
        wait_for(lambda: len(receiver.received) >= 6, 20, "six notices delivered", *servers)
        wait_for(lambda: latest_checkpoint_size(second.base_url) == 12, 20, "a checkpoint of 12 events", *servers)
        time.sleep(LEASE * 1.5)  # several rounds of both: a second sender or signer would show now
        assert len(receiver.received) == 6
        assert len({jti(notice) for notice in receiver.received}) == 6
        for job in ("checkpoints", "recipient-deliveries", "dsr-reminders"):
            assert (jobs_started(first, job), jobs_started(second, job)) == (1, 0), job
        for server in servers:
            assert "round failed" not in server.log.read_text(errors="replace"), server.output()

        # The process running the jobs is killed: the other takes each over within the lease and a round.
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=10)
        killed = time.monotonic()

        # Changes while no process delivers (their wake-up is lost with the leader): sent once it is replaced.
        def write_more() -> None:
            for n in range(6, 9):
                withdraw(second.base_url, token, f"cust-{n}")

        writes = threading.Thread(target=write_more)
        writes.start()
        for job in ("checkpoints", "recipient-deliveries", "dsr-reminders"):
            wait_for(partial(taken_by, second, job), LEASE * 3, f"{job} taken over", second)
        taken_over = time.monotonic() - killed
        assert taken_over <= LEASE + LEASE / 3 + 0.5, taken_over  # the lease, a round, the log line's way here
        writes.join(timeout=60)
        wait_for(lambda: len(receiver.received) >= 9, 20, "the notices made after the kill delivered", second)
        wait_for(lambda: latest_checkpoint_size(second.base_url) == 18, 20, "a checkpoint of 18 events", second)
        time.sleep(LEASE * 1.5)
        assert len(receiver.received) == 9
        assert len({jti(notice) for notice in receiver.received}) == 9, "no notice delivered twice"
        assert "round failed" not in second.log.read_text(errors="replace"), second.output()
    finally:
        for server in servers:
            server.stop()
        receiver.close()
