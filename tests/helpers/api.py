"""The HTTP API as a client uses it: a real token, and a record call."""

from __future__ import annotations

import base64
from typing import Any

from starlette.testclient import TestClient

from server.auth.clients import create_client

ALL_SCOPES = "consent:check consent:read consent:write proof:read admin"


def bearer(client: TestClient, scopes: str = ALL_SCOPES) -> dict[str, str]:
    """Authorization header of a real token: a client is created, then uses the token endpoint."""
    assert client.portal is not None
    new = client.portal.call(create_client, "test", scopes)
    basic = base64.b64encode(f"{new.client_id}:{new.client_secret}".encode()).decode()
    response = client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, headers={"Authorization": f"Basic {basic}"}
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def confirmed_by_import(decisions: list[tuple[str, str, str]]) -> dict[str, str]:
    """The body's touchpoint for `decisions`: an API client records `confirm` only as an import of a confirmation
    collected elsewhere (the person's click on the mailed link is the preference center's:
    tests/preference_center/test_mail.py)."""
    return {"touchpoint": "import"} if any(action == "confirm" for _, _, action in decisions) else {}


def record(
    client: TestClient,
    headers: dict[str, str],
    ref: str,
    decisions: list[tuple[str, str, str]],
    policy: str = "privacy-policy/2/fr",
    **extra: Any,
) -> Any:
    document, version, lang = policy.split("/")
    body = {
        "policy": {"document": document, "version": version, "lang": lang},
        "decisions": [{"purpose": p, "channel": c, "action": a} for p, c, a in decisions],
        **extra,
    }
    return client.post(f"/v1/subjects/{ref}/consents", json=body, headers=headers)
