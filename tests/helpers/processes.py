"""Real server processes: `python -m server serve` on a port of this test process, its readiness, a token from it, and
`python -m server ...` commands next to it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from tests.databases import POLICY_DIR

SECRET_KEY = "crash-safety-test-secret-key-0123456789abcdef"


def server_env(database_url: str, tmp_path: Path, port: int) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "SECRET_KEY": SECRET_KEY,
        "DATA_DIR": str(tmp_path / "data"),
        "SIGNING_KEYS_DIR": str(tmp_path / "data" / "signing-keys"),
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
        "PORT": str(port),
        "POLICY_DIR": str(POLICY_DIR),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        # These servers take writes only: no stream worker processes (tests/consent/test_stream_workers.py sets its
        # own).
        "STREAM_WORKERS": "0",
    }


def cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base_url: str
    log: Path
    log_file: IO[bytes]

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        """SIGKILL if still running (the crash itself, or clean-up in `finally`)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self.log_file.close()


def start_server(env: dict[str, str], cwd: Path, name: str, command: list[str] | None = None) -> Server:
    """`python -m server serve` (or `command`), its output in `cwd/name.log`."""
    log = cwd / f"{name}.log"
    log_file = log.open("wb")
    process = subprocess.Popen(
        command or [sys.executable, "-m", "server", "serve"],
        env=env,
        cwd=cwd,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    return Server(process, env["PUBLIC_URL"], log, log_file)


def wait_ready(
    base_url: str, process: subprocess.Popen[Any], describe: Callable[[], str] = str, timeout: float = 20.0
) -> None:
    """Poll GET /readyz until 200; fail early if the process exits, and after `timeout` seconds (with `describe()`,
    e.g. the server's log)."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited with {process.returncode} before it was ready\n{describe()}")
        try:
            response = httpx.get(f"{base_url}/readyz", timeout=2)
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text}"
        except httpx.TransportError as exc:
            last = repr(exc)
        time.sleep(0.1)
    pytest.fail(f"{base_url}/readyz not ready after {timeout} s: {last}\n{describe()}")


def access_token(base_url: str, client_id: str, client_secret: str) -> str:
    response = httpx.post(
        f"{base_url}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client_id, client_secret),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def new_client(env: dict[str, str], cwd: Path, scopes: str, name: str = "t") -> dict[str, str]:
    """`python -m server clients create` on the server's database: the new client's id and secret."""
    created = cli(env, cwd, "clients", "create", "--name", name, "--scopes", scopes)
    assert created.returncode == 0, created.stdout + created.stderr
    credentials: dict[str, str] = json.loads(created.stdout)
    return credentials
