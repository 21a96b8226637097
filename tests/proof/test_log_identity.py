"""The transparency log's id is fixed when the log is created and stored: a later change of PUBLIC_URL leaves every
checkpoint, proof bundle and `ledger verify` valid, and new checkpoints keep the old id."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from server.app import create_app
from server.models import LogIdentity
from server.proof.log import TransparencyLog
from server.proof.verify_bundle import report, verify_bundle
from server.settings import Settings
from tests import independent
from tests.helpers.api import bearer, record
from tests.helpers.app import run, services_of
from tests.helpers.clock import Clock

FIRST_URL = "http://testserver"
MOVED_URL = "https://consent.moved.example"


def _command(settings: Settings, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DATABASE_URL": settings.database_url,
        "SECRET_KEY": settings.secret_key,
        "SIGNING_KEYS_DIR": str(settings.signing_keys_dir),
        "POLICY_DIR": str(settings.policy_dir),
        "PUBLIC_URL": settings.public_url,
        "DATA_DIR": str(cwd / "data"),
    }
    return subprocess.run(
        [sys.executable, "-m", "server", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


def _bundle(client: TestClient, auth: dict[str, str], ref: str, path: Path) -> Path:
    response = client.get(f"/v1/subjects/{ref}/proof", headers=auth)
    assert response.status_code == 200, response.text
    path.write_bytes(response.content)
    return path


def _signed_payload(client: TestClient, checkpoint: dict[str, Any]) -> dict[str, Any]:
    _, payload = independent.verify_es256(checkpoint["signature"], client.get("/.well-known/jwks.json").json())
    result: dict[str, Any] = json.loads(payload)
    return result


def test_a_public_url_change_keeps_every_checkpoint_bundle_and_verify_valid(
    settings: Settings, clock: Clock, tmp_path: Path
) -> None:
    with TestClient(create_app(settings, clock=clock)) as client:
        auth = bearer(client)
        for i in range(3):
            assert record(client, auth, f"id-{i}", [("offers", "email", "grant")]).status_code == 201
        first = client.get("/v1/ledger/checkpoints/latest").json()
        assert first["log_id"] == FIRST_URL and _signed_payload(client, first)["log_id"] == FIRST_URL
        old_bundle = _bundle(client, auth, "id-1", tmp_path / "before.zip")
        stored = run(client, _stored)
        assert (stored.log_id, stored.source) == (FIRST_URL, "public_url")

    moved = settings.with_overrides(public_url=MOVED_URL)
    with TestClient(create_app(moved, clock=clock)) as client:
        auth = bearer(client)
        assert record(client, auth, "id-1", [("offers", "sms", "grant")]).status_code == 201
        latest = client.get("/v1/ledger/checkpoints/latest").json()
        # The new checkpoint is signed for the log's stored id, not for the PUBLIC_URL of this process.
        assert latest["tree_size"] == first["tree_size"] + 1
        assert latest["log_id"] == FIRST_URL and _signed_payload(client, latest)["log_id"] == FIRST_URL
        old = client.get(f"/v1/ledger/checkpoints/{first['tree_size']}").json()
        assert old == first
        consistency = client.get(f"/v1/ledger/proofs/consistency?from={first['tree_size']}&to={latest['tree_size']}")
        assert consistency.status_code == 200, consistency.text
        new_bundle = _bundle(client, auth, "id-1", tmp_path / "after.zip")
        checkpoint_in_bundle = json.loads(zipfile.ZipFile(new_bundle).read("checkpoint.json"))
        assert checkpoint_in_bundle["log_id"] == FIRST_URL

    for bundle in (old_bundle, new_bundle):
        verdict = verify_bundle(bundle)
        assert verdict.passed, report(verdict)
        offline = _command(moved, tmp_path, "proof", "verify", str(bundle))
        assert offline.returncode == 0 and "VERDICT: the bundle verifies" in offline.stdout, offline.stdout

    checkpoint = _command(moved, tmp_path, "ledger", "checkpoint")
    assert checkpoint.returncode == 0, checkpoint.stderr
    assert json.loads(checkpoint.stdout)["log_id"] == FIRST_URL
    verified = _command(moved, tmp_path, "ledger", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"transparency log id: {FIRST_URL}\n" in verified.stdout
    assert "BROKEN" not in verified.stdout and "NOTE" not in verified.stdout, verified.stdout
    assert verified.stdout.rstrip().endswith("checkpoints: OK"), verified.stdout


async def _stored() -> LogIdentity:
    return await LogIdentity.get(id=1)


def _forget_identity() -> Any:
    return LogIdentity.filter(id=1).delete()


def test_a_database_signed_before_the_id_was_stored_keeps_the_id_of_its_checkpoints(
    settings: Settings, clock: Clock, tmp_path: Path
) -> None:
    """An older release derived the id from PUBLIC_URL: its checkpoints name the log. Migrated, the database adopts
    the id of its first checkpoint, whatever PUBLIC_URL is now; checkpoints that release signed after a PUBLIC_URL
    change are reported as a note, not as a break, and every root is still audited."""
    with TestClient(create_app(settings, clock=clock)) as client:
        auth = bearer(client)
        services = services_of(client)
        record(client, auth, "old-1", [("offers", "email", "grant")])
        run(client, services.log.checkpoint)
        run(client, _forget_identity)  # as if no release had stored one
        # The older release, moved to another PUBLIC_URL before this one: its next checkpoint names that URL.
        older = TransparencyLog(services.keys, "http://interim.example", clock)
        older._log_id = "http://interim.example"
        record(client, auth, "old-2", [("offers", "email", "grant")])
        run(client, older.checkpoint)
        run(client, _forget_identity)

    moved = settings.with_overrides(public_url=MOVED_URL)
    with TestClient(create_app(moved, clock=clock)) as client:
        stored = run(client, _stored)
        assert (stored.log_id, stored.source) == (FIRST_URL, "checkpoints")
        auth = bearer(client)
        record(client, auth, "old-3", [("offers", "email", "grant")])
        latest = client.get("/v1/ledger/checkpoints/latest").json()
        assert latest["tree_size"] == 3 and _signed_payload(client, latest)["log_id"] == FIRST_URL
        # Each checkpoint is served with the id it was signed for.
        assert client.get("/v1/ledger/checkpoints/2").json()["log_id"] == "http://interim.example"

    verified = _command(moved, tmp_path, "ledger", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "NOTE checkpoints 2: signed for the log id 'http://interim.example' before" in verified.stdout
    assert "BROKEN" not in verified.stdout, verified.stdout


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_checkpoint_signed_for_another_id_after_the_id_was_stored_is_a_break(
    settings: Settings, clock: Clock, tmp_path: Path
) -> None:
    with TestClient(create_app(settings, clock=clock)) as client:
        auth = bearer(client)
        services = services_of(client)
        record(client, auth, "late-1", [("offers", "email", "grant")])
        run(client, services.log.checkpoint)
        clock.advance(seconds=5)
        stray = TransparencyLog(services.keys, "http://elsewhere.example", clock)
        stray._log_id = "http://elsewhere.example"
        record(client, auth, "late-2", [("offers", "email", "grant")])
        run(client, stray.checkpoint)
    verified = _command(settings, tmp_path, "ledger", "verify")
    assert verified.returncode == 1, verified.stdout + verified.stderr
    assert "BROKEN checkpoints 2: signed for the log 'http://elsewhere.example'" in verified.stdout
