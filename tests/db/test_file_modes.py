"""Files holding personal data or secrets are the service account's own: the SQLite database and its -wal and -shm,
the signing keys, the stored secret key and the mail outbox are created 0600 in folders created 0700, and ones that
exist with wider permissions are tightened when the server starts, with a log line each."""

from __future__ import annotations

import logging
import os
import shutil
import stat
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from server.app import create_app
from server.files import tighten
from server.settings import Settings
from tests.databases import POLICY_DIR, SqliteTemplate
from tests.helpers.api import bearer, record
from tests.helpers.app import run, services_of


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _send_mail(client: TestClient) -> None:
    mailer = services_of(client).mailer
    message = EmailMessage()
    message["To"] = "someone@example.org"
    message.set_content("hello")
    run(client, mailer.send, message)


@pytest.fixture(autouse=True)
def _usual_umask() -> object:
    """The umask most systems give (022): without the explicit modes, files would be created 0644."""
    previous = os.umask(0o022)
    yield None
    os.umask(previous)


def test_files_the_service_creates_are_readable_by_its_account_only(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DATA_DIR": str(data),
        "DATABASE_URL": f"sqlite://{data}/db/consent.sqlite3",
        "POLICY_DIR": str(POLICY_DIR),
    }
    for verb in (["migrate"], ["policies", "sync"]):
        done = subprocess.run([sys.executable, "-m", "server", *verb], env=env, cwd=tmp_path, capture_output=True)
        assert done.returncode == 0, done.stderr
    settings = Settings.from_env({**env, "ENVIRONMENT": "test", "CHECKPOINT_INTERVAL_SECONDS": "0"}, env_file=None)
    database = data / "db" / "consent.sqlite3"
    with TestClient(create_app(settings)) as client:
        assert record(client, bearer(client), "private", [("offers", "email", "grant")]).status_code == 201
        _send_mail(client)
        # While the server runs, SQLite's sidecars exist; they take the database file's mode.
        sidecars = [database.with_name(database.name + suffix) for suffix in ("-wal", "-shm")]
        assert all(path.exists() for path in sidecars)
        assert {path.name: _mode(path) for path in [database, *sidecars]} == {
            path.name: 0o600 for path in [database, *sidecars]
        }
    folders = [data, data / "db", data / "signing-keys", data / "mail"]
    assert {str(f): _mode(f) for f in folders} == {str(f): 0o700 for f in folders}
    files = [data / "secret.key", *(data / "signing-keys").glob("*.jwk.json"), *(data / "mail").glob("*.eml")]
    assert len(files) == 3
    assert {str(f): _mode(f) for f in files} == {str(f): 0o600 for f in files}


@pytest.mark.parametrize("backend", ["sqlite"])
def test_existing_files_are_tightened_at_start_with_a_log_line(
    tmp_path: Path, sqlite_template: SqliteTemplate, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    keys, mail = data / "signing-keys", data / "mail"
    for folder in (data, keys, mail):
        folder.mkdir(mode=0o755)
        folder.chmod(0o755)
    database = data / "consent.sqlite3"
    shutil.copyfile(sqlite_template.template, database)
    (data / "secret.key").write_text("x" * 48)
    (mail / "old.eml").write_text("To: someone@example.org\n\nhello\n")
    loose = [database, data / "secret.key", mail / "old.eml"]
    for path in loose:
        path.chmod(0o644)
    settings = settings.with_overrides(
        data_dir=data, database_url=f"sqlite://{database}", signing_keys_dir=keys, mail_dir=mail
    )
    with caplog.at_level(logging.WARNING, logger="server.files"), TestClient(create_app(settings)):
        pass
    assert {str(p): _mode(p) for p in loose} == {str(p): 0o600 for p in loose}
    assert {str(p): _mode(p) for p in (data, keys, mail)} == {str(p): 0o700 for p in (data, keys, mail)}
    told = {record.args[0] for record in caplog.records if record.name == "server.files"}  # type: ignore[index]
    assert {database, data / "secret.key", mail / "old.eml", data, keys, mail} <= told, told


def test_a_shared_folder_is_never_tightened(tmp_path: Path) -> None:
    """DATA_DIR pointed at /tmp by mistake must not lock every other user out of it."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    assert tighten(shared) is False and _mode(shared) == 0o1777
