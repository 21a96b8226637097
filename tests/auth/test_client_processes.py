"""API client lifecycle across processes: two real servers (uvicorn subprocesses on loopback ports) on one
database. A change made through one server's API or the command line is honoured by the other within a second:
the revoked client's token refused, a scope taken away refused; a rotated secret keeps the old one working."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from tests.helpers.processes import Server, access_token, cli, server_env, start_server, wait_ready
from tests.ports import free_port

CHECK = {"subject": "cust-proc", "purpose": "offers", "channel": "email"}
WITHIN_S = 1.0


def _create(env: dict[str, str], cwd: Path, scopes: str) -> dict[str, str]:
    created = cli(env, cwd, "clients", "create", "--name", "integration", "--scopes", scopes)
    assert created.returncode == 0, created.stdout + created.stderr
    credentials: dict[str, str] = json.loads(created.stdout)
    return credentials


def _serve(env: dict[str, str], cwd: Path, name: str) -> Server:
    """A ready server on `env`'s port, or on another when that one was taken meanwhile (8 people share this
    machine: a port free when chosen may be bound by someone else's test before the server binds it)."""
    for _ in range(3):
        server = start_server(env, cwd, name)
        server.base_url = f"http://127.0.0.1:{env['PORT']}"
        deadline = time.monotonic() + 30
        while server.process.poll() is None and time.monotonic() < deadline:
            try:
                if httpx.get(f"{server.base_url}/readyz", timeout=2).status_code == 200:
                    return server
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        if "address already in use" not in server.output():
            wait_ready(server.base_url, server.process, server.output, timeout=1)  # fails with the log
        server.stop()
        env["PORT"] = str(free_port())
    pytest.fail(f"no free port for {name}")


@pytest.fixture
def servers(database_url: str, tmp_path: Path) -> Iterator[tuple[Server, Server, dict[str, str]]]:
    """Two servers on one database, with the same secret key, signing keys and PUBLIC_URL (the token issuer: as
    behind one proxy); the env of the command line."""
    env_a = server_env(database_url, tmp_path, free_port())
    env_b = {**server_env(database_url, tmp_path, free_port()), "PUBLIC_URL": env_a["PUBLIC_URL"]}
    started: list[Server] = []
    try:
        started.append(_serve(env_a, tmp_path, "a"))  # the first creates the signing keys
        started.append(_serve(env_b, tmp_path, "b"))
        yield started[0], started[1], env_a
    finally:
        for server in started:
            server.stop()


def _check(server: Server, token: str) -> httpx.Response:
    return httpx.get(
        f"{server.base_url}/v1/consents/check", params=CHECK, headers={"Authorization": f"Bearer {token}"}, timeout=5
    )


def _refused_within(server: Server, token: str, seconds: float) -> float:
    """Poll the check with `token` until it is refused (401); how long that took. Fails after `seconds`."""
    started = time.monotonic()
    while True:
        answer = _check(server, token)
        elapsed = time.monotonic() - started
        if answer.status_code == 401:
            assert answer.headers["content-type"] == "application/problem+json"
            assert answer.json()["type"] == "/problems/unauthorized"
            assert answer.headers["www-authenticate"].startswith("Bearer")
            return elapsed
        assert answer.status_code == 200, answer.text
        if elapsed > seconds:
            pytest.fail(f"the token was still accepted {elapsed:.2f} s after the change")
        time.sleep(0.02)


def test_a_client_revoked_on_one_server_is_refused_by_the_other_within_a_second(
    servers: tuple[Server, Server, dict[str, str]], tmp_path: Path
) -> None:
    first, second, env = servers
    admin = _create(env, tmp_path, "admin")
    victim = _create(env, tmp_path, "consent:check")
    admin_token = access_token(first.base_url, admin["client_id"], admin["client_secret"])
    token = access_token(first.base_url, victim["client_id"], victim["client_secret"])
    for server in (first, second):
        assert _check(server, token).status_code == 200  # verified and cached by both

    revoked = httpx.post(
        f"{first.base_url}/v1/clients/{victim['client_id']}/revoke",
        headers={"Authorization": f"Bearer {admin_token}"},
        timeout=5,
    )
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["revoked_at"] is not None
    print(f"revoked on one server, refused by the other after {_refused_within(second, token, WITHIN_S):.3f} s")
    _refused_within(first, token, WITHIN_S)
    again = httpx.post(
        f"{second.base_url}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(victim["client_id"], victim["client_secret"]),
        timeout=5,
    )
    assert again.status_code == 401 and again.json()["error"] == "invalid_client"


def test_revoked_on_the_command_line_and_refused_by_both_servers(
    servers: tuple[Server, Server, dict[str, str]], tmp_path: Path
) -> None:
    first, second, env = servers
    victim = _create(env, tmp_path, "consent:check")
    token = access_token(second.base_url, victim["client_id"], victim["client_secret"])
    assert _check(first, token).status_code == 200 and _check(second, token).status_code == 200
    done = cli(env, tmp_path, "clients", "revoke", victim["client_id"])
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["revoked_at"] is not None
    # The command's commit is behind us: from here each server has one refresh interval, and the poll one second.
    _refused_within(first, token, WITHIN_S)
    _refused_within(second, token, WITHIN_S)
    listed = [json.loads(line) for line in cli(env, tmp_path, "clients", "list").stdout.splitlines()]
    assert [c["revoked_at"] is not None for c in listed if c["client_id"] == victim["client_id"]] == [True]
    assert all(not {"client_secret", "secret_sha256", "previous_secret_sha256"} & set(c) for c in listed)
    assert victim["client_secret"] not in cli(env, tmp_path, "clients", "list").stdout


def test_a_scope_taken_away_refuses_the_tokens_carrying_it_on_every_server(
    servers: tuple[Server, Server, dict[str, str]], tmp_path: Path
) -> None:
    first, second, env = servers
    client = _create(env, tmp_path, "consent:check consent:read")
    token = access_token(first.base_url, client["client_id"], client["client_secret"])
    assert _check(second, token).status_code == 200
    done = cli(env, tmp_path, "clients", "set-scopes", client["client_id"], "consent:read")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["scopes"] == ["consent:read"]
    _refused_within(second, token, WITHIN_S)
    _refused_within(first, token, WITHIN_S)
    fresh = access_token(second.base_url, client["client_id"], client["client_secret"])
    assert _check(first, fresh).status_code == 403  # a new token has only consent:read
    asked = httpx.post(
        f"{first.base_url}/oauth/token",
        data={"grant_type": "client_credentials", "scope": "consent:check"},
        auth=(client["client_id"], client["client_secret"]),
        timeout=5,
    )
    assert asked.status_code == 400 and asked.json()["error"] == "invalid_scope"


def test_a_rotated_secret_keeps_the_old_one_and_the_tokens_until_asked(
    servers: tuple[Server, Server, dict[str, str]], tmp_path: Path
) -> None:
    first, second, env = servers
    client = _create(env, tmp_path, "consent:check")
    token = access_token(first.base_url, client["client_id"], client["client_secret"])
    overlap_s = 4  # the command's setting: it writes when the previous secret stops working
    done = cli(
        {**env, "CLIENT_SECRET_OVERLAP_S": str(overlap_s)}, tmp_path, "clients", "rotate-secret", client["client_id"]
    )
    assert done.returncode == 0, done.stderr
    rotated = json.loads(done.stdout)
    assert rotated["client_secret"] != client["client_secret"]
    until = datetime.fromisoformat(rotated["previous_secret_valid_until"]).timestamp()
    time.sleep(WITHIN_S)  # both servers have seen the change
    for server in (first, second):
        assert _check(server, token).status_code == 200, "rotation alone revokes no token"
        access_token(server.base_url, client["client_id"], client["client_secret"])  # the overlap
        access_token(server.base_url, client["client_id"], rotated["client_secret"])
    assert time.time() < until, "too slow to have tested the overlap"
    time.sleep(max(0.0, until + 0.3 - time.time()))
    for server in (first, second):
        past = httpx.post(
            f"{server.base_url}/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(client["client_id"], client["client_secret"]),
            timeout=5,
        )
        assert past.status_code == 401 and past.json()["error"] == "invalid_client", past.text
        assert _check(server, token).status_code == 200, "the overlap's end revokes no token either"
    done = cli(env, tmp_path, "clients", "rotate-secret", "--revoke-tokens", client["client_id"])
    assert done.returncode == 0, done.stderr
    newest = json.loads(done.stdout)["client_secret"]
    _refused_within(second, token, WITHIN_S)
    assert _check(first, access_token(first.base_url, client["client_id"], newest)).status_code == 200


def test_a_server_stops_cleanly_with_its_refresh_task(
    servers: tuple[Server, Server, dict[str, str]],
) -> None:
    first, _, _ = servers
    first.process.send_signal(signal.SIGTERM)
    # uvicorn shuts the app down, then raises the signal again: the status says "ended by SIGTERM".
    assert first.process.wait(timeout=20) in (0, -signal.SIGTERM), first.output()
    assert "Application shutdown complete." in first.output()
    assert "Traceback" not in first.output() and '"level":"ERROR"' not in first.output(), first.output()
