"""The cookie banner as a visitor's browser uses it: its configuration, a choice, the record call, and the ledger it
leaves."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
from starlette.testclient import TestClient

from tests.helpers.api import bearer

ORIGIN = "http://127.0.0.1:8000"
VISITOR = ("203.0.113.7", 50123)
CONSENT_ID = "ck_" + "A1b2C3d4E5f6G7h8I9j0-_"


def config(client: TestClient) -> dict[str, Any]:
    response = client.get("/v1/banner/config", params={"site": "demo"}, headers={"Origin": ORIGIN})
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def choice(client: TestClient, method: str, categories: list[str], lang: str = "fr", **extra: Any) -> dict[str, Any]:
    return {
        "site": "demo",
        "consent_id": CONSENT_ID,
        "categories": categories,
        "method": method,
        "policy_version": config(client)["policy"][lang]["version"],
        "lang": lang,
        "text_sha256": config(client)["hash"][lang],
        **extra,
    }


def post(client: TestClient, body: Any, origin: str | None = ORIGIN, **headers: str) -> Any:
    if origin is not None:
        headers["Origin"] = origin
    return client.post("/v1/cookie-consents", json=body, headers=headers)


def ledger(client: TestClient, ref: str = CONSENT_ID) -> list[dict[str, Any]]:
    response = client.get(f"/v1/subjects/{ref}/events", headers=bearer(client, "consent:read"))
    assert response.status_code == 200, response.text
    events: list[dict[str, Any]] = response.json()["events"]
    return events


def _choice_over_http(http: httpx.Client, origin: str) -> dict[str, Any]:
    config = http.get("/v1/banner/config", params={"site": "demo"}, headers={"Origin": origin})
    assert config.status_code == 200, config.text
    data = config.json()
    return {
        "site": "demo",
        "consent_id": "ck_" + secrets.token_urlsafe(16)[:22],
        "categories": ["analytics"],
        "method": "save",
        "policy_version": data["policy"]["en"]["version"],
        "lang": "en",
        "text_sha256": data["hash"]["en"],
    }


def record_over_http(http: httpx.Client, origin: str, **headers: str) -> str:
    """One banner choice of the demo site sent by a real HTTP client (a server process, or nginx before it); the
    consent id recorded."""
    body = _choice_over_http(http, origin)
    answer = http.post("/v1/cookie-consents", json=body, headers={"Origin": origin, **headers})
    assert answer.status_code == 200, f"{answer.status_code} {answer.text[:300]}"
    return str(body["consent_id"])
