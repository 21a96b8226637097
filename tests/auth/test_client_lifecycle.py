"""The admin API of API clients (`/v1/clients/...`): list, revoke, rotate the secret with its overlap, set the
scopes; the problems it answers; every change in the access log with its actor."""

from __future__ import annotations

import base64
import time
from typing import Any

from starlette.testclient import TestClient

from server.auth.clients import create_client
from server.models import AccessLog
from tests.helpers.app import run
from tests.helpers.clock import Clock
from tests.helpers.sql import sql


def _client(client: TestClient, scopes: str) -> Any:
    return run(client, create_client, "integration", scopes)


def _token(client: TestClient, client_id: str, secret: str, **form: str) -> Any:
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return client.post(
        "/oauth/token", data={"grant_type": "client_credentials", **form}, headers={"Authorization": f"Basic {basic}"}
    )


def _bearer(client: TestClient, client_id: str, secret: str) -> dict[str, str]:
    answer = _token(client, client_id, secret)
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def _check(client: TestClient, headers: dict[str, str]) -> Any:
    return client.get(
        "/v1/consents/check", params={"subject": "c-1", "purpose": "offers", "channel": "email"}, headers=headers
    )


def _refused_within_a_second(client: TestClient, headers: dict[str, str]) -> dict[str, Any]:
    deadline = time.monotonic() + 1.0
    while (answer := _check(client, headers)).status_code == 200:
        assert time.monotonic() < deadline, "still accepted a second after the change"
        time.sleep(0.02)
    assert answer.status_code == 401 and answer.headers["content-type"] == "application/problem+json", answer.text
    problem: dict[str, Any] = answer.json()
    return problem


def _entries(client: TestClient, action: str) -> list[dict[str, Any]]:
    async def work() -> list[dict[str, Any]]:
        return list(await AccessLog.filter(action=action).values("actor_type", "actor_id", "detail", "at"))

    result: list[dict[str, Any]] = run(client, work)
    return result


def test_an_admin_lists_and_revokes_a_client_and_its_tokens_stop_working(client: TestClient) -> None:
    admin = _client(client, "admin")
    victim = _client(client, "consent:check")
    as_admin = _bearer(client, admin.client_id, admin.client_secret)
    as_victim = _bearer(client, victim.client_id, victim.client_secret)
    assert _check(client, as_victim).status_code == 200

    listed = client.get("/v1/clients", headers=as_admin)
    assert listed.status_code == 200 and listed.headers["cache-control"] == "no-store"
    ids = [c["client_id"] for c in listed.json()["clients"]]
    assert {admin.client_id, victim.client_id} <= set(ids)
    assert victim.client_secret not in listed.text and "sha256" not in listed.text

    revoked = client.post(f"/v1/clients/{victim.client_id}/revoke", headers=as_admin)
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["revoked_at"] is not None
    problem = _refused_within_a_second(client, as_victim)
    assert problem["type"] == "/problems/unauthorized" and "revoked" in problem["detail"]
    refused = _token(client, victim.client_id, victim.client_secret)
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"

    again = client.post(f"/v1/clients/{victim.client_id}/revoke", headers=as_admin)
    assert again.status_code == 200 and again.json()["revoked_at"] == revoked.json()["revoked_at"]
    [entry] = _entries(client, "client_revoke")  # the second revocation changed nothing: no second entry
    assert (entry["actor_type"], entry["actor_id"]) == ("client", admin.client_id)
    assert entry["detail"]["client_id"] == victim.client_id

    for path, body in (("rotate-secret", {}), ("scopes", {"scopes": ["consent:read"]})):
        method = client.post if path == "rotate-secret" else client.put
        answer = method(f"/v1/clients/{victim.client_id}/{path}", json=body, headers=as_admin)
        assert answer.status_code == 409 and answer.json()["type"] == "/problems/client-revoked", answer.text


def test_unknown_clients_and_an_admin_revoking_itself_get_their_problems(client: TestClient) -> None:
    admin = _client(client, "admin consent:check")
    as_admin = _bearer(client, admin.client_id, admin.client_secret)
    for client_id in ("cl_nobody", "x" * 300):
        answer = client.post(f"/v1/clients/{client_id}/revoke", headers=as_admin)
        assert answer.status_code == 404, answer.text
        assert answer.json()["type"] == "/problems/unknown-client"
    # A NUL is refused before any route reads it, as on every path (server.kernel.unstorable).
    answer = client.post("/v1/clients/cl_%00/revoke", headers=as_admin)
    assert answer.status_code == 422 and answer.json()["type"] == "/problems/unstorable-text", answer.text
    own = client.post(f"/v1/clients/{admin.client_id}/revoke", headers=as_admin)
    assert own.status_code == 409 and own.json()["type"] == "/problems/own-client"
    demoted = client.put(f"/v1/clients/{admin.client_id}/scopes", json={"scopes": ["consent:check"]}, headers=as_admin)
    assert demoted.status_code == 409 and demoted.json()["type"] == "/problems/own-client"
    bad = client.put(f"/v1/clients/{admin.client_id}/scopes", json={"scopes": ["root"]}, headers=as_admin)
    assert bad.status_code == 422 and bad.json()["type"] == "/problems/invalid-request"
    empty = client.put(f"/v1/clients/{admin.client_id}/scopes", json={"scopes": []}, headers=as_admin)
    assert empty.status_code == 422
    assert _check(client, as_admin).status_code == 200  # nothing of that changed the admin


def test_set_scopes_applies_to_new_tokens_at_once_and_to_old_ones_within_a_second(client: TestClient) -> None:
    admin = _client(client, "admin")
    target = _client(client, "consent:check consent:read")
    as_admin = _bearer(client, admin.client_id, admin.client_secret)
    old = _bearer(client, target.client_id, target.client_secret)
    answer = client.put(f"/v1/clients/{target.client_id}/scopes", json={"scopes": ["consent:read"]}, headers=as_admin)
    assert answer.status_code == 200 and answer.json()["scopes"] == ["consent:read"], answer.text
    fresh = _token(client, target.client_id, target.client_secret)
    assert fresh.status_code == 200 and fresh.json()["scope"] == "consent:read"
    assert _token(client, target.client_id, target.client_secret, scope="consent:check").status_code == 400
    problem = _refused_within_a_second(client, old)
    assert "scope" in problem["detail"]
    [entry] = _entries(client, "client_set_scopes")
    assert entry["detail"]["before"] == ["consent:check", "consent:read"] and entry["detail"]["after"] == [
        "consent:read"
    ]


def test_a_rotated_secret_keeps_the_old_one_for_the_overlap_then_refuses_it(client: TestClient, clock: Clock) -> None:
    admin = _client(client, "admin")
    target = _client(client, "consent:check")
    as_admin = _bearer(client, admin.client_id, admin.client_secret)
    held = _bearer(client, target.client_id, target.client_secret)
    clock.set(clock())
    rotated = client.post(f"/v1/clients/{target.client_id}/rotate-secret", json={}, headers=as_admin)
    assert rotated.status_code == 200 and rotated.headers["cache-control"] == "no-store", rotated.text
    body = rotated.json()
    new_secret = body["client_secret"]
    assert new_secret != target.client_secret and body["previous_secret_valid_until"]
    assert new_secret not in client.get("/v1/clients", headers=as_admin).text  # shown once

    clock.advance(hours=23, minutes=59)  # CLIENT_SECRET_OVERLAP_S is 24 h by default
    assert _token(client, target.client_id, target.client_secret).status_code == 200
    assert _token(client, target.client_id, new_secret).status_code == 200
    clock.advance(minutes=2)
    old = _token(client, target.client_id, target.client_secret)
    assert old.status_code == 401 and old.json()["error"] == "invalid_client"
    assert _token(client, target.client_id, new_secret).status_code == 200
    time.sleep(0.6)  # a refresh of the view has passed: rotation alone revokes no token
    assert _check(client, held).status_code == 200

    again = client.post(f"/v1/clients/{target.client_id}/rotate-secret", json={"revoke_tokens": True}, headers=as_admin)
    assert again.status_code == 200
    _refused_within_a_second(client, held)
    entries = _entries(client, "client_rotate_secret")
    assert [e["detail"]["revoke_tokens"] for e in entries] == [False, True]
    assert all(new_secret not in str(e) for e in entries)


def test_a_client_row_deleted_by_hand_loses_its_tokens(client: TestClient, settings: Any) -> None:
    """Deleting the row (instead of `clients revoke`) changes the number of clients, so the view reloads without
    it and refuses its tokens, instead of honouring them until they expire."""
    target = _client(client, "consent:check")
    held = _bearer(client, target.client_id, target.client_secret)
    assert _check(client, held).status_code == 200
    time.sleep(1.1)  # the token's issue second is behind every later load of the view
    sql(settings.database_url, f"DELETE FROM api_clients WHERE client_id = '{target.client_id}'")
    problem = _refused_within_a_second(client, held)
    assert "no longer exists" in problem["detail"]
