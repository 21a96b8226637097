"""Browser tests: a real server process on loopback (SQLite, fresh data dir), Debian's chromium via Playwright.

Fixtures here are shared by every e2e module: `live_server` (base URL, env, a helper to get API tokens),
`host_server` (a plain static server on ANOTHER origin, for embedding pages), `axe` (injects axe-core from the npm
registry and returns the violations). Screenshots go to e2e/artifacts/ (git-ignored).
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.ports import free_port

REPO = Path(__file__).resolve().parent.parent
E2E = Path(__file__).resolve().parent
ARTIFACTS = E2E / "artifacts"
AXE = Path(__file__).resolve().parent / "node_modules" / "axe-core" / "axe.min.js"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """With the suite spread over processes (`-n 2 --dist loadgroup`, scripts/test), every browser test runs in
    one process, after the others (the group is the last in collection order): the browser session keeps an event
    loop running on the main thread, where the non-browser tests and the command line call `asyncio.run`."""
    for item in items:
        if item.path.is_relative_to(E2E):
            item.add_marker(pytest.mark.xdist_group("browser"))


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """Debian's chromium: `playwright install` cannot download browsers here."""
    return {
        **browser_type_launch_args,
        "executable_path": "/usr/bin/chromium",
        "args": [
            "--no-sandbox",
            "--headless",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ],
    }


@dataclass
class LiveServer:
    url: str
    env: dict[str, str]
    data_dir: Path
    process: subprocess.Popen[bytes]
    extra: dict[str, Any] = field(default_factory=dict)

    def cli(self, *args: str) -> str:
        """Run `python -m server ARGS` against this server's database; returns stdout."""
        done = subprocess.run(
            [sys.executable, "-m", "server", *args], env=self.env, cwd=REPO, capture_output=True, timeout=60
        )
        assert done.returncode == 0, done.stderr.decode()
        return done.stdout.decode()

    def token(self, scopes: str = "consent:check consent:read consent:write proof:read admin") -> dict[str, str]:
        """An Authorization header with a real token from the token endpoint."""
        client = json.loads(self.cli("clients", "create", "--name", "e2e", "--scopes", scopes))
        response = httpx.post(
            f"{self.url}/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(client["client_id"], client["client_secret"]),
        )
        response.raise_for_status()
        return {"Authorization": f"Bearer {response.json()['access_token']}"}


def start_server(data_dir: Path, extra_env: dict[str, str] | None = None) -> LiveServer:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "DATA_DIR": str(data_dir),
        "DATABASE_URL": f"sqlite://{data_dir}/db.sqlite3",
        "SECRET_KEY": "e2e-secret-key-" + "x" * 40,
        "PUBLIC_URL": url,
        "PORT": str(port),
        "POLICY_DIR": str(REPO / "policy_docs"),
        "ENVIRONMENT": "development",
        # No browser test streams checks: no stream worker processes to spawn for each server (tests/ has theirs).
        "STREAM_WORKERS": "0",
        **(extra_env or {}),
    }
    for step in (["migrate"], ["policies", "sync"]):
        subprocess.run([sys.executable, "-m", "server", *step], env=env, cwd=REPO, check=True, capture_output=True)
    log = (data_dir / "server.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "server", "serve"], env=env, cwd=REPO, stdout=log, stderr=log)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return LiveServer(url, env, data_dir, process)
        if process.poll() is not None:
            break
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"server did not come up: {(data_dir / 'server.log').read_text()[-2000:]}")


def stop_server(server: LiveServer) -> None:
    server.process.send_signal(signal.SIGTERM)
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A fresh server (own SQLite database, migrated, policies synced) for one test."""
    server = start_server(tmp_path)
    try:
        yield server
    finally:
        stop_server(server)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return None


@dataclass
class HostServer:
    url: str
    root: Path


@contextlib.contextmanager
def static_server(root: Path) -> Iterator[HostServer]:
    """Serve `root` on a free loopback port: another origin than the API."""
    port = free_port()

    def handler(*args: Any, **kwargs: Any) -> _Quiet:
        return _Quiet(*args, directory=str(root), **kwargs)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield HostServer(f"http://127.0.0.1:{port}", root)
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def host_server(tmp_path: Path) -> Iterator[HostServer]:
    """A static file server on another origin (another port): the company's site that embeds our widgets."""
    root = tmp_path / "host"
    root.mkdir()
    with static_server(root) as server:
        yield server


@pytest.fixture
def axe() -> Any:
    """`axe(page, selector=None)` -> list of WCAG 2.x A/AA violations (axe-core from the npm registry)."""
    if not AXE.is_file():
        pytest.fail("axe-core is missing: scripts/test installs it into e2e/node_modules")
    source = AXE.read_text()

    def run(page: Any, include: str | None = None) -> list[dict[str, Any]]:
        page.add_script_tag(content=source)
        result = page.evaluate(
            """async (include) => {
                const r = await axe.run(include ? {include: [include]} : document,
                    {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa']}});
                return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                    nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}));
            }""",
            include,
        )
        return list(result)

    return run


def screenshot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
