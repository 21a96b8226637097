"""What the app answers once a trusted proxy's headers are read: HSTS and Secure cookies only over https, the
console's same-origin check against the host the visitor used, `Cache-Control: no-store` and `nosniff` on
personal answers while public resources keep their own caching, and `/metrics` behind its token."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from server.app import create_app
from server.settings import Settings
from tests.helpers.api import bearer, record
from tests.helpers.app import services_of
from tests.helpers.banner import choice, post
from tests.helpers.console import PASSWORD, new_staff

PROXY = ("10.1.2.3", 40000)
HTTPS = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "consent.example"}
HSTS = "max-age=31536000; includeSubDomains"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@contextmanager
def _app(settings: Settings, peer: tuple[str, int] = PROXY, **overrides: Any) -> Iterator[TestClient]:
    configured = settings.with_overrides(**{"forwarded_allow_ips": ("10.1.2.0/24",), **overrides})
    with TestClient(create_app(configured), raise_server_exceptions=False, client=peer) as client:
        yield client


@pytest.fixture
def behind_proxy(settings: Settings) -> Iterator[TestClient]:
    with _app(settings) as client:
        yield client


def test_hsts_only_when_the_visitor_used_https(settings: Settings) -> None:
    with _app(settings) as behind_proxy:  # one app at a time: Tortoise has one global context
        assert behind_proxy.get("/healthz", headers=HTTPS).headers.get("strict-transport-security") == HSTS
        assert "strict-transport-security" not in behind_proxy.get("/healthz").headers
        plain = {**HTTPS, "X-Forwarded-Proto": "http"}
        assert "strict-transport-security" not in behind_proxy.get("/healthz", headers=plain).headers
    with _app(settings, peer=("198.51.100.9", 40000)) as untrusted:  # the same headers from a peer not trusted
        assert "strict-transport-security" not in untrusted.get("/healthz", headers=HTTPS).headers
    with _app(settings, hsts_max_age_s=0) as off:
        assert "strict-transport-security" not in off.get("/healthz", headers=HTTPS).headers
    with _app(settings, hsts_max_age_s=600) as short:
        assert short.get("/healthz", headers=HTTPS).headers["strict-transport-security"] == (
            "max-age=600; includeSubDomains"
        )


def _login_form(client: TestClient, headers: dict[str, str]) -> tuple[str, str, str]:
    """(CSRF token, the desk_login cookie's value, its Set-Cookie line) of the sign-in page."""
    page = client.get("/console/login", headers=headers)
    line = next(v for k, v in page.headers.multi_items() if k == "set-cookie" and v.startswith("desk_login="))
    token = _CSRF.search(page.text)
    assert token, page.text
    return token.group(1), line.split(";")[0].split("=", 1)[1], line


def _sign_in(client: TestClient, email: str, headers: dict[str, str], origin: str) -> Any:
    csrf, cookie, _ = _login_form(client, headers)
    client.cookies.clear()  # sent by hand: a Secure cookie set for https never rides the test's plain http
    return client.post(
        "/console/login",
        data={"email": email, "password": PASSWORD, "csrf": csrf, "next": "/console"},
        headers={**headers, "Origin": origin, "Cookie": f"desk_login={cookie}"},
        follow_redirects=False,
    )


def test_cookies_are_secure_over_https_and_the_origin_is_the_forwarded_one(behind_proxy: TestClient) -> None:
    _, _, over_https = _login_form(behind_proxy, HTTPS)
    assert "secure" in over_https.lower(), over_https
    _, _, over_http = _login_form(behind_proxy, {"X-Forwarded-For": "203.0.113.7"})
    assert "secure" not in over_http.lower(), over_http

    email = new_staff(behind_proxy, "agent").email
    signed_in = _sign_in(behind_proxy, email, HTTPS, "https://consent.example")
    assert signed_in.status_code == 303, signed_in.text
    session = next(v for k, v in signed_in.headers.multi_items() if v.startswith("desk_session="))
    assert "secure" in session.lower(), session
    # The host the visitor used is the forwarded one: a form posted from the service's inner address is another
    # origin, as is the visitor's host over http.
    assert _sign_in(behind_proxy, email, HTTPS, "http://testserver:8000").status_code == 400
    assert _sign_in(behind_proxy, email, HTTPS, "http://consent.example").status_code == 400


def test_untrusted_peers_cannot_claim_another_origin(settings: Settings) -> None:
    with _app(settings, peer=("198.51.100.9", 40000)) as untrusted:
        email = new_staff(untrusted, "agent").email
        assert _sign_in(untrusted, email, HTTPS, "https://consent.example").status_code == 400
        assert _sign_in(untrusted, email, HTTPS, "http://testserver").status_code == 303


def test_personal_answers_are_not_stored_and_public_ones_keep_their_caching(behind_proxy: TestClient) -> None:
    client = behind_proxy
    auth = bearer(client)
    assert record(client, auth, "cust-cache", [("offers", "email", "grant")]).status_code == 201
    banner = post(
        client, choice(client, "accept_all", ["analytics", "marketing", "preferences"]), origin="http://testserver"
    )
    assert banner.status_code == 200, banner.text[:300]
    personal = {
        "API subject read": client.get("/v1/subjects/cust-cache/consents", headers=auth),
        "API events": client.get("/v1/subjects/cust-cache/events", headers=auth),
        "proof bundle": client.get("/v1/subjects/cust-cache/proof", headers=auth),
        "ledger export": client.get("/v1/ledger/export", headers=auth),
        "a problem": client.get("/v1/subjects/nobody/consents", headers=auth),
        "banner record": banner,
        "token": client.post("/oauth/token", data={"grant_type": "password"}),
        "preference page (refused link)": client.get("/preferences?token=nope"),
        "console page": client.get("/console/login"),
    }
    for name, answer in personal.items():
        assert answer.status_code < 500, (name, answer.status_code)
        assert answer.headers.get("cache-control") == "no-store", (name, answer.headers.get("cache-control"))
        assert answer.headers.get("x-content-type-options") == "nosniff", name
    policies = client.get("/v1/policies").json()
    first = policies[0]["url"].removeprefix("http://testserver")
    script = client.get("/widgets/banner.js")
    pinned = re.fullmatch(r"<(/widgets/banner\.[0-9a-f]+\.js)>; rel=\"canonical\"", script.headers["link"])
    assert pinned, script.headers["link"]
    kept = {
        "/v1/policies": (client.get("/v1/policies"), "public, max-age=60"),
        "policy text": (client.get(first), "public, max-age=31536000, immutable"),
        "jwks": (client.get("/.well-known/jwks.json"), "public, max-age=300"),
        "banner.js": (script, "public, max-age=300"),
        "banner config": (client.get("/v1/banner/config?site=demo"), "public, max-age=300"),
        "gpc.json": (client.get("/.well-known/gpc.json"), "public, max-age=86400"),
        "banner.{digest}.js": (client.get(pinned.group(1)), "public, max-age=31536000, immutable"),
    }
    for name, (answer, cache) in kept.items():
        assert answer.status_code == 200, (name, answer.status_code)
        assert answer.headers.get("cache-control") == cache, (name, answer.headers.get("cache-control"))
        assert answer.headers.get("x-content-type-options") == "nosniff", name
    size = client.get("/v1/ledger/checkpoints/latest").json()["tree_size"]
    checkpoint = client.get(f"/v1/ledger/checkpoints/{size}")
    assert checkpoint.headers["cache-control"] == "public, max-age=31536000, immutable"


def test_metrics_need_their_token_when_one_is_set(settings: Settings) -> None:
    token = "m" * 24
    with _app(settings, metrics_token=token) as client:
        refused = client.get("/metrics")
        assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
        assert refused.json()["type"].endswith("/problems/unauthorized")
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/metrics", headers=bearer(client)).status_code == 401  # an API token is not it
        scraped = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert scraped.status_code == 200 and "http_requests_total" in scraped.text
    with _app(settings) as development:  # settings of the test environment: open without a token
        assert development.get("/metrics").status_code == 200


def test_metrics_are_refused_in_production_without_a_token(settings: Settings) -> None:
    with _app(settings, environment="production") as client:
        refused = client.get("/metrics")
        assert refused.status_code == 404 and "METRICS_TOKEN" in refused.json()["detail"]
        assert client.get("/healthz").status_code == 200


def test_a_preference_center_choice_keeps_the_forwarded_visitor_network(settings: Settings, tmp_path: Path) -> None:
    """The preference center's evidence is the visitor a trusted proxy names, not the proxy (nor a prepended
    address)."""
    ref = "cust-forwarded"
    with _app(settings, mail_dir=tmp_path / "mail") as client:
        record(client, bearer(client), ref, [("offers", "email", "deny")])
        token, _ = services_of(client).links.issue(ref, "preferences")
        forwarded = {"X-Forwarded-For": "198.51.100.1, 203.0.113.77", "X-Forwarded-Proto": "https"}
        page = client.get("/preferences", params={"token": token}, headers=forwarded)
        csrf = _CSRF.search(page.text)
        assert page.status_code == 200 and csrf, page.text[:300]
        answer = client.post(
            "/preferences/toggle",
            data={"token": token, "csrf": csrf.group(1), "lang": "fr", "set": "offers:sms:on"},
            headers={**forwarded, "HX-Request": "true"},
        )
        assert answer.status_code == 200, answer.text[:300]
        events = client.get(f"/v1/subjects/{ref}/events", headers=bearer(client, "consent:read")).json()["events"]
    assert [e["evidence"].get("ip") for e in events if e["touchpoint"] == "preference_center"] == ["203.0.113.0/24"]
