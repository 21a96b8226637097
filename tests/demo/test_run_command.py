"""The README's run command, `scripts/dev`, on a fresh data directory: it sets up, migrates, seeds the demo data,
prints the URLs and a demo client's credentials that work, and serves; run again on the same data, it is the same
demo (idempotent seeding, same client)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from server.demo import describe
from server.settings import Settings
from tests.helpers.paths import REPO
from tests.helpers.processes import access_token, wait_ready
from tests.ports import free_port

READY_TIMEOUT = 120.0  # scripts/setup runs pip first


def run_dev(tmp_path: Path, name: str) -> tuple[str, int]:
    """Run `bash scripts/dev` until /readyz answers, check what it printed and serves, then SIGTERM it.

    Returns the demo client_id it printed and the number of events of demo-alice."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {
        "DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": f"sqlite://{tmp_path / 'db.sqlite3'}",
        "PORT": str(port),
        "PUBLIC_URL": base_url,
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(tmp_path)),
    }
    out_path, err_path = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        process = subprocess.Popen(
            ["bash", "scripts/dev"], cwd=REPO, env=env, stdout=out, stderr=err, start_new_session=True
        )

    def output() -> str:
        return (
            f"stdout:\n{out_path.read_text(errors='replace')}\nstderr:\n{err_path.read_text(errors='replace')[-4000:]}"
        )

    try:
        wait_ready(base_url, process, output, timeout=READY_TIMEOUT)
        # What it printed: the URLs to open and the demo client's credentials.
        stdout = out_path.read_text(errors="replace")
        for url in (f"{base_url}/openapi.json", f"{base_url}/v1/policies", f"{base_url}/readyz"):
            assert url in stdout, output()
        found = re.search(r"client_id=(\S+) client_secret=(\S+)", stdout)
        assert found is not None, output()
        client_id, client_secret = found[1], found[2]

        # The printed credentials work, and the demo subjects are there.
        token = access_token(base_url, client_id, client_secret)
        headers = {"Authorization": f"Bearer {token}"}
        matrix = httpx.get(f"{base_url}/v1/subjects/demo-alice/consents", headers=headers, timeout=10)
        assert matrix.status_code == 200, matrix.text
        cells = {(c["purpose"], c["channel"]): c for c in matrix.json()["consents"]}
        assert cells[("newsletter", "email")]["allowed"] is True, cells
        assert cells[("offers", "sms")]["allowed"] is True, cells
        assert cells[("offers", "email")]["reason"] == "no_record", cells
        events = httpx.get(f"{base_url}/v1/subjects/demo-alice/events", headers=headers, timeout=10)
        assert events.status_code == 200, events.text

        # SIGTERM stops it (uvicorn shuts down gracefully, then may re-raise the signal).
        process.send_signal(signal.SIGTERM)
        try:
            returncode = process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pytest.fail(f"scripts/dev did not exit within 20 s of SIGTERM\n{output()}")
        assert returncode in (0, -signal.SIGTERM), (returncode, output())
        return client_id, len(events.json()["events"])
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.mark.slow
def test_scripts_dev_serves_the_demo_and_is_idempotent(tmp_path: Path) -> None:
    first_client, first_events = run_dev(tmp_path, "first")
    assert (tmp_path / "data" / "secret.key").is_file()
    assert (tmp_path / "db.sqlite3").is_file()
    assert first_events == 4  # demo-alice: grant, confirm, grant, grant

    second_client, second_events = run_dev(tmp_path, "second")
    assert second_client == first_client
    assert second_events == first_events  # seeded once, not twice


@pytest.mark.parametrize(
    ("host", "port", "public_url", "base", "note"),
    [
        ("127.0.0.1", 8000, "http://127.0.0.1:8000", "http://127.0.0.1:8000", False),
        ("127.0.0.1", 8123, "http://127.0.0.1:8000", "http://127.0.0.1:8123", True),  # only PORT changed
        ("0.0.0.0", 9000, "http://127.0.0.1:9000", "http://127.0.0.1:9000", False),  # noqa: S104 - the case tested
        ("::1", 9001, "https://consent.example.com", "http://[::1]:9001", True),
    ],
)
def test_demo_prints_where_the_server_listens_and_says_when_public_url_differs(
    host: str, port: int, public_url: str, base: str, note: bool
) -> None:
    settings = Settings(host=host, port=port, public_url=public_url)
    printed = describe(settings, {"client_id": "cid", "client_secret": "sec"}, {"email": "e@x", "password": "pw"})
    assert f"Service desk:        {base}/console" in printed
    assert f"-d grant_type=client_credentials {base}/oauth/token" in printed
    assert (f"PUBLIC_URL is {public_url}, but this server listens on {base}" in printed) is note
