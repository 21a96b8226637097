"""A full disk under the SQLite data directory: the real server (`python -m server serve`) on a small tmpfs that the
test fills up. Writes answer 503 with Retry-After (never 500), `/readyz` says not ready and why, checks still
answer; once space is freed, writes succeed again without a restart, and `ledger verify` finds nothing half
written.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.databases import SqliteTemplate
from tests.helpers.processes import access_token, cli, new_client, server_env, start_server, wait_ready
from tests.ports import free_port

DISK_MB = 24
READY_MIN_FREE_MB = 2


@contextlib.contextmanager
def small_disk(where: Path) -> Iterator[Path]:
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m", "tmpfs", str(where)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (the test needs root or CAP_SYS_ADMIN): {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(directory: Path) -> Path:
    """Write a file until the disk refuses (ENOSPC), in smaller and smaller writes down to one block."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        size = 1024 * 1024
        while size >= 4096:
            try:
                os.write(fd, b"\xff" * size)
            except OSError:
                size //= 2
    finally:
        os.close(fd)
    return filler


def record(http: httpx.Client, ref: str) -> httpx.Response:
    body = {
        "policy": {"document": "privacy-policy", "version": "2", "lang": "en"},
        "decisions": [
            {"purpose": "offers", "channel": "email", "action": "grant"},
            {"purpose": "offers", "channel": "sms", "action": "grant"},
        ],
        "evidence": {"reference": "x" * 200},
    }
    return http.post(f"/v1/subjects/{ref}/consents", json=body)


@pytest.mark.slow
def test_a_full_disk_is_503_not_ready_and_recovers_without_corruption(
    sqlite_template: SqliteTemplate, tmp_path: Path
) -> None:
    with small_disk(tmp_path / "disk") as disk:
        data = disk / "data"
        data.mkdir()
        template_url, _ = sqlite_template.new()
        database = data / "consent.sqlite3"
        shutil.copyfile(template_url.removeprefix("sqlite://"), database)
        port = free_port()
        env = {
            **server_env(f"sqlite://{database}", tmp_path, port),
            "DATA_DIR": str(data),
            "SIGNING_KEYS_DIR": str(data / "signing-keys"),
            "READY_MIN_FREE_MB": str(READY_MIN_FREE_MB),
            "CHECKPOINT_INTERVAL_SECONDS": "0",
        }
        credentials = new_client(env, tmp_path, "consent:write consent:read consent:check")
        server = start_server(env, tmp_path, "server")
        try:
            wait_ready(server.base_url, server.process, server.output)
            token = access_token(server.base_url, credentials["client_id"], credentials["client_secret"])
            with httpx.Client(
                base_url=server.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
            ) as http:
                for n in range(5):
                    assert record(http, f"before-{n}").status_code == 201

                filler = fill(disk)
                ready = http.get("/readyz")
                assert ready.status_code == 503, ready.text
                assert ready.json()["checks"]["disk"] != "ok" and ready.json()["checks"]["database"] == "ok", ready.text

                statuses: Counter[int] = Counter()
                for n in range(60):
                    answer = record(http, f"full-{n}")
                    statuses[answer.status_code] += 1
                    assert answer.status_code in (201, 503), (answer.status_code, answer.text, server.output())
                    if answer.status_code == 503:
                        assert answer.headers["retry-after"], answer.headers
                        assert answer.json()["type"] == "/problems/service-unavailable", answer.text
                assert statuses[503] > 0, statuses
                checked = http.get("/v1/consents/check?subject=before-0&purpose=offers&channel=email")
                assert checked.status_code == 200 and checked.json()["allowed"] is True, checked.text

                filler.unlink()
                ready = http.get("/readyz")
                assert ready.status_code == 200, ready.text
                for n in range(5):
                    answer = record(http, f"after-{n}")
                    assert answer.status_code == 201, (answer.text, server.output())
            assert server.process.poll() is None
        finally:
            server.stop()
        verified = cli(env, tmp_path, "ledger", "verify")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert "OK" in verified.stdout, verified.stdout
