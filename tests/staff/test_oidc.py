"""Sign-in with the company's OpenID Connect provider, against a real provider on loopback (e2e/oidc_provider.py):
authorization code + PKCE (S256) + nonce, ID token verified against the provider's JWKS, the role claim mapped to
exactly one desk role, and every tampered token refused."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from starlette.testclient import TestClient

from e2e.oidc_provider import OidcProvider
from server.models import AccessLog, StaffAccount
from server.settings import Settings
from server.staff.oidc import OidcError, role_from_claims
from tests.helpers.app import run
from tests.helpers.busy import sqlite_write_lock_held
from tests.helpers.console import count, fetch, new_staff, post, sign_in


@pytest.fixture
def idp() -> Iterator[OidcProvider]:
    user = {"sub": "ada-1", "email": "ada@corp.example", "name": "Ada Agent", "roles": ["employee", "agent"]}
    with OidcProvider(user) as provider:
        yield provider


@pytest.fixture
def settings(settings: Settings, idp: OidcProvider) -> Settings:
    return settings.with_overrides(
        oidc_issuer=idp.issuer, oidc_client_id=idp.client_id, oidc_client_secret=idp.client_secret
    )


def oidc_sign_in(client: TestClient, idp: OidcProvider, next_path: str = "/console/requests") -> Any:
    """The browser's walk: console -> provider (real HTTP on loopback) -> back to the console's callback."""
    client.cookies.clear()
    start = client.get("/console/auth/oidc", params={"next": next_path}, follow_redirects=False)
    assert start.status_code == 303, start.text
    location = start.headers["location"]
    assert location.startswith(f"{idp.issuer}/authorize?")
    query = parse_qs(urlsplit(location).query)
    assert query["code_challenge_method"] == ["S256"] and query["code_challenge"][0]
    assert (
        query["nonce"][0] and query["state"][0] and query["redirect_uri"] == ["http://testserver/console/auth/callback"]
    )
    back = httpx.get(location, follow_redirects=False)
    assert back.status_code == 302, back.text
    callback = back.headers["location"]
    assert callback.startswith("http://testserver/console/auth/callback?")
    return client.get(callback.removeprefix("http://testserver"), follow_redirects=False)


def test_sign_in_through_the_provider(client: TestClient, idp: OidcProvider) -> None:
    login = client.get("/console/login")
    assert "Sign in with your company account" in login.text
    answer = oidc_sign_in(client, idp)
    assert answer.status_code == 303 and answer.headers["location"] == "/console/requests"
    assert client.get("/console/requests").status_code == 200
    account = fetch(client, StaffAccount, oidc_subject="ada-1")
    assert account.role == "agent" and account.email == "ada@corp.example" and account.oidc_issuer == idp.issuer
    assert account.password_hash is None
    assert "POST /token" in idp.requests and "GET /jwks" in idp.requests

    async def sign_ins() -> list[Any]:
        return list(await AccessLog.filter(action="staff_sign_in").values("actor_id", "detail"))

    assert run(client, sign_ins) == [{"actor_id": str(account.id), "detail": {"role": "agent", "method": "oidc"}}]
    # the provider's role is authoritative: it is read again at every sign-in
    idp.user["roles"] = ["supervisor"]
    assert oidc_sign_in(client, idp).status_code == 303
    assert fetch(client, StaffAccount, oidc_subject="ada-1").role == "supervisor"
    assert count(client, StaffAccount, oidc_subject="ada-1") == 1


@pytest.mark.parametrize("backend", ["sqlite"])  # SQLite's one write lock; PostgreSQL waits for the row
def test_a_provider_sign_in_met_by_a_busy_database_shows_the_sign_in_page(
    client: TestClient, idp: OidcProvider, settings: Settings
) -> None:
    """The provider signed the person in, but the account cannot be written: the sign-in page says so (503,
    Retry-After) with no session; the next walk through the provider signs in."""
    with sqlite_write_lock_held(client, settings):
        busy = oidc_sign_in(client, idp)
    assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
    assert "The database is busy: you were not signed in." in busy.text
    assert 'name="next" value="/console/requests"' in busy.text  # where the person was going
    assert "desk_session" not in client.cookies
    assert oidc_sign_in(client, idp).status_code == 303


@pytest.mark.parametrize(
    ("roles", "message"),
    [
        (["employee"], "no service desk role"),
        (["agent", "admin"], "several service desk roles"),
        ("root", "no service"),
    ],
)
def test_a_role_claim_without_exactly_one_desk_role_refuses_sign_in(
    client: TestClient, idp: OidcProvider, roles: Any, message: str
) -> None:
    idp.user["roles"] = roles
    answer = oidc_sign_in(client, idp)
    assert answer.status_code == 400 and message in answer.text
    assert "desk_session" not in answer.headers.get("set-cookie", "")
    assert client.get("/console", follow_redirects=False).status_code == 303


@pytest.mark.parametrize("tamper", ["nonce", "aud", "iss", "exp", "signature"])
def test_tampered_id_tokens_are_refused(client: TestClient, idp: OidcProvider, tamper: str) -> None:
    idp.tamper = tamper
    answer = oidc_sign_in(client, idp)
    assert answer.status_code == 400 and "ID token does not verify" in answer.text, answer.text
    assert client.get("/console", follow_redirects=False).status_code == 303
    assert count(client, StaffAccount) == 0


def test_a_callback_with_another_state_or_no_flow_cookie_is_refused(client: TestClient, idp: OidcProvider) -> None:
    start = client.get("/console/auth/oidc", follow_redirects=False)
    back = httpx.get(start.headers["location"], follow_redirects=False)
    callback = back.headers["location"].removeprefix("http://testserver")
    forged = callback.replace("state=", "state=x")
    assert client.get(forged, follow_redirects=False).status_code == 400
    client.cookies.clear()
    assert client.get(callback, follow_redirects=False).status_code == 400
    assert client.get("/console/auth/callback?code=abc&state=def").status_code == 400


def test_a_disabled_account_and_a_local_account_with_the_same_email_are_refused(
    client: TestClient, idp: OidcProvider
) -> None:
    new_staff(client, "agent", email="ada@corp.example")
    answer = oidc_sign_in(client, idp)
    assert answer.status_code == 400 and "already exists" in answer.text
    idp.user.update(sub="bob-2", email="bob@corp.example")
    assert oidc_sign_in(client, idp).status_code == 303
    bob = fetch(client, StaffAccount, oidc_subject="bob-2")
    admin = sign_in(client, "admin")
    assert post(client, admin, f"/console/staff/{bob.id}", {"role": "agent", "disabled": "1"}).status_code == 303
    refused = oidc_sign_in(client, idp)
    assert refused.status_code == 400 and "disabled" in refused.text


def test_an_unreachable_provider_is_a_clear_message(client: TestClient, idp: OidcProvider) -> None:
    idp.stop()
    answer = client.get("/console/auth/oidc", follow_redirects=False)
    assert answer.status_code == 502 and "unreachable" in answer.text


def test_role_claim_paths() -> None:
    assert role_from_claims({"roles": ["x", "auditor"]}, "roles") == "auditor"
    assert role_from_claims({"role": "admin"}, "role") == "admin"
    assert (
        role_from_claims({"realm_access": {"roles": ["supervisor", "offline"]}}, "realm_access.roles") == "supervisor"
    )
    for claims in ({}, {"roles": None}, {"roles": [1, 2]}, {"roles": ["agent", "auditor"]}):
        with pytest.raises(OidcError):
            role_from_claims(claims, "roles")


def test_without_a_provider_the_company_sign_in_is_not_offered(settings: Settings, clock: Any) -> None:
    from server.app import create_app

    plain = settings.with_overrides(oidc_issuer=None, oidc_client_id=None, oidc_client_secret=None)
    with TestClient(create_app(plain, clock=clock)) as other:
        assert "company account" not in other.get("/console/login").text
        assert other.get("/console/auth/oidc").status_code == 404
