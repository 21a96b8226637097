"""`python -m server backup PATH` while a real server takes writes: the backup is 0600, restores (a file copy on
SQLite, pg_restore into a fresh database on PostgreSQL) and passes `python -m server ledger verify`."""

from __future__ import annotations

import re
import shutil
import stat
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.databases import asyncpg_dsn
from tests.helpers.processes import access_token, cli, new_client, server_env, start_server, wait_ready
from tests.helpers.sql import is_sqlite
from tests.ports import free_port


def _write_until(
    stop: threading.Event, base_url: str, token: str, writer: int, acknowledged: list[int], errors: list[str]
) -> None:
    """Grant then withdraw, on subjects of this writer's own, until `stop`."""
    body = {"policy": {"document": "privacy-policy", "version": "2", "lang": "en"}}
    granted: dict[str, bool] = {}
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=10) as http:
        n = 0
        while not stop.is_set():
            ref = f"backup-{writer}-{n % 5}"
            action = "withdraw" if granted.get(ref) else "grant"
            decisions = [{"purpose": "offers", "channel": "email", "action": action}]
            answer = http.post(f"/v1/subjects/{ref}/consents", json={**body, "decisions": decisions})
            if answer.status_code == 201:
                granted[ref] = action == "grant"
                acknowledged.append(n)
            else:
                errors.append(f"{answer.status_code} {answer.text[:200]}")
            n += 1


def _restore(backup: Path, database_url: str, tmp_path: Path, request: pytest.FixtureRequest, n: int) -> str:
    """The backup restored into a new database; its URL."""
    if is_sqlite(database_url):
        restored = tmp_path / f"restored-{n}.sqlite3"
        shutil.copyfile(backup, restored)
        return f"sqlite://{restored}"
    template: Any = request.getfixturevalue("postgres_template")
    url, name = template.empty()
    request.addfinalizer(lambda: template.drop(name))
    done = subprocess.run(
        ["pg_restore", "--no-owner", f"--dbname={asyncpg_dsn(url)}", str(backup)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return str(url)


def test_a_backup_taken_during_writes_restores_and_verifies(
    database_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    env = server_env(database_url, tmp_path, free_port())
    credentials = new_client(env, tmp_path, "consent:write", name="b")
    server = start_server(env, tmp_path, "server")
    stop = threading.Event()
    acknowledged: list[int] = []
    errors: list[str] = []
    backups = [tmp_path / "backups" / f"consent-{n}.backup" for n in range(2)]
    try:
        wait_ready(server.base_url, server.process, server.output)
        token = access_token(server.base_url, credentials["client_id"], credentials["client_secret"])
        writers = [
            threading.Thread(target=_write_until, args=(stop, server.base_url, token, w, acknowledged, errors))
            for w in range(2)
        ]
        for writer in writers:
            writer.start()
        for path in backups:
            while len(acknowledged) < 20 * (backups.index(path) + 1):
                time.sleep(0.02)
            taken = cli(env, tmp_path, "backup", str(path))  # the writers go on meanwhile
            assert taken.returncode == 0, taken.stdout + taken.stderr
            assert taken.stdout.startswith(f"backup: {path}"), taken.stdout
        stop.set()
        for writer in writers:
            writer.join(timeout=20)
    finally:
        stop.set()
        server.stop()
    assert errors == [], errors[:3]
    refused = cli(env, tmp_path, "backup", str(backups[0]))
    assert refused.returncode == 2 and "never overwrites" in refused.stderr

    for n, path in enumerate(backups):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        restored = _restore(path, database_url, tmp_path, request, n)
        verified = cli({**env, "DATABASE_URL": restored}, tmp_path, "ledger", "verify")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        summary = re.search(r"(\d+) subjects, (\d+) events: OK$", verified.stdout, re.MULTILINE)
        assert summary is not None and int(summary[2]) >= 20 * (n + 1), verified.stdout
        assert re.search(r"transparency log: \d+ entries, \d+ checkpoints: OK$", verified.stdout, re.MULTILINE)


def test_without_pg_dump_the_recipe_is_printed(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    env = {"PATH": str(tmp_path / "empty-bin"), "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/none"}
    (tmp_path / "empty-bin").mkdir()
    done = cli({**env, "SECRET_KEY": "k" * 40, "DATA_DIR": str(tmp_path / "d")}, tmp_path, "backup", "x.dump")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "pg_dump --format=custom" in done.stderr and "pg_restore" in done.stderr
    assert not (tmp_path / "x.dump").exists()
