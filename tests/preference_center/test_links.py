"""Link tokens, CSRF and the two link-issuing API endpoints of the preference center, on both databases.

A refused link (tampered, expired, other audience, other use, missing) gets a friendly page that offers a new link,
never a stack trace, and nothing is written; a POST without its CSRF token gets a 403 page and writes nothing.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from joserfc import jwt
from starlette.testclient import TestClient

from server.models import ConsentEvent, Subject
from server.settings import Settings
from tests.helpers.api import record
from tests.helpers.app import run, services_of

REF = "cust-links"


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    """The dev outbox goes to the test's own folder."""
    return settings.with_overrides(mail_dir=tmp_path / "mail")


def issue(client: TestClient, use: str = "preferences", ref: str = REF, **claims: Any) -> str:
    token, _ = services_of(client).links.issue(ref, use, **claims)
    return str(token)


def hidden(page: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert match, f"no hidden field {name}"
    return match.group(1)


async def _event_count() -> int:
    return await ConsentEvent.all().count()


def events(client: TestClient) -> int:
    return int(run(client, _event_count))


def _tampered(client: TestClient) -> str:
    header, payload, signature = issue(client).split(".")
    claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "someone-else"
    forged = base64.urlsafe_b64encode(orjson.dumps(claims)).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


def _other_audience(client: TestClient) -> str:
    keys = services_of(client).keys
    claims = {"iss": "http://testserver", "aud": "http://testserver/v1", "sub": REF, "exp": 4102444800}
    claims |= {"iat": 1, "jti": "x", "use": "preferences"}
    return str(jwt.encode({"alg": "ES256", "kid": keys.active.kid}, claims, keys.active, algorithms=["ES256"]))


REFUSED: dict[str, Callable[[TestClient], str]] = {
    "tampered": _tampered,
    "expired": lambda c: issue(c, lifetime_s=-5),
    "wrong audience": _other_audience,
    "wrong use": lambda c: issue(c, "confirm", purpose="newsletter", channel="email"),
    "not a token": lambda c: "not-a-token",
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_links_get_a_friendly_page_and_change_nothing(client: TestClient, case: str) -> None:
    token = REFUSED[case](client)
    page = client.get("/preferences", params={"token": token, "lang": "en"})
    assert page.status_code == 403
    assert "text/html" in page.headers["content-type"]
    assert "Traceback" not in page.text and "Exception" not in page.text
    heading = "This link has expired" if case == "expired" else "This link is not valid"
    assert f"<h1>{heading}</h1>" in page.text
    assert 'action="/preferences/request-link"' in page.text, "the page offers a new link"
    # The same token cannot write either, through any form.
    forms = [
        ("/preferences/toggle", {"set": "offers:sms:on"}),
        ("/preferences/unsubscribe-all", {}),
        ("/preferences/confirm", {}),
    ]
    for path, data in forms:
        answer = client.post(path, data={"token": token, "csrf": "x", **data})
        assert answer.status_code == 403, path
    assert client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"}).status_code == 403
    assert events(client) == 0


def test_each_link_works_only_for_its_own_use(client: TestClient, auth: dict[str, str]) -> None:
    unsubscribe = issue(client, "unsubscribe", purpose="offers", channel="email")
    assert client.get("/preferences", params={"token": unsubscribe}).status_code == 403
    assert client.get("/preferences/confirm", params={"token": unsubscribe}).status_code == 403
    preferences = issue(client)
    assert client.get(f"/unsubscribe/{preferences}").status_code == 403
    assert client.post(f"/unsubscribe/{preferences}", data={"List-Unsubscribe": "One-Click"}).status_code == 403
    # An API access token is not a link, and a link is not an API access token.
    access = auth["Authorization"].split()[1]
    assert client.get("/preferences", params={"token": access}).status_code == 403
    assert client.get("/v1/subjects/x/consents", headers={"Authorization": f"Bearer {preferences}"}).status_code == 401
    assert events(client) == 0


def test_missing_link_offers_a_new_one(client: TestClient) -> None:
    page = client.get("/preferences", headers={"Accept-Language": "fr-FR,fr;q=0.9"})
    assert page.status_code == 403
    assert "Votre lien personnel est nécessaire" in page.text
    assert 'name="email"' in page.text


def test_the_page_opens_with_a_link_then_from_its_session(client: TestClient) -> None:
    page = client.get("/preferences", params={"token": issue(client)})
    assert page.status_code == 200
    headers = page.headers
    assert "frame-ancestors 'self'" in headers["content-security-policy"]
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["cache-control"] == "no-store"
    cookie = headers["set-cookie"]
    assert "pc_link=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/preferences" in cookie
    again = client.get("/preferences")  # the token left the URL; the session cookie carries it
    assert again.status_code == 200 and 'id="row-offers"' in again.text


def test_a_post_without_its_csrf_token_is_refused_and_writes_nothing(client: TestClient) -> None:
    token = issue(client)
    page = client.get("/preferences", params={"token": token})
    csrf = hidden(page.text, "csrf")
    other_page = client.get("/preferences", params={"token": issue(client)}).text
    for data in ({}, {"csrf": ""}, {"csrf": csrf[:-2] + "xx"}, {"csrf": hidden(other_page, "csrf")}):
        answer = client.post("/preferences/toggle", data={"token": token, "set": "offers:sms:on", "lang": "en", **data})
        assert answer.status_code == 403, data
        assert "Nothing was changed" in answer.text
    for path in ("/preferences/unsubscribe-all", "/preferences/reconsent", "/preferences/resend"):
        assert client.post(path, data={"token": token}).status_code == 403, path
    assert events(client) == 0
    # With the right one, the same request is recorded.
    answer = client.post("/preferences/toggle", data={"token": token, "csrf": csrf, "set": "offers:sms:on"})
    assert answer.status_code == 200
    assert events(client) == 1


def test_preference_link_api_sets_contact_data_and_opens_the_page(client: TestClient, auth: dict[str, str]) -> None:
    answer = client.post(
        "/v1/subjects/cust-api/preference-links", json={"email": "ana@example.com", "locale": "en"}, headers=auth
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"url", "token", "expires_at"}
    assert body["url"] == f"http://testserver/preferences?token={body['token']}"

    async def subject() -> tuple[str | None, str | None]:
        row = await Subject.get(ref="cust-api")
        return row.email, row.locale

    assert run(client, subject) == ("ana@example.com", "en")
    page = client.get(body["url"])
    assert page.status_code == 200 and '<html lang="en">' in page.text
    assert events(client) == 0, "contact data are not the ledger"
    refused = client.post("/v1/subjects/cust-api/preference-links", json={"email": "nope"}, headers=auth)
    assert refused.status_code == 422
    # An existing subject keeps its chain; only the contact data change.
    assert record(client, auth, "cust-api", [("offers", "email", "grant")]).status_code == 201
    again = client.post("/v1/subjects/cust-api/preference-links", json={"locale": "fr"}, headers=auth)
    assert again.status_code == 200
    assert run(client, subject) == ("ana@example.com", "fr")


def test_unsubscribe_link_api_returns_the_rfc_8058_headers(client: TestClient, auth: dict[str, str]) -> None:
    answer = client.post(
        "/v1/subjects/cust-api/unsubscribe-links", json={"purpose": "newsletter", "channel": "email"}, headers=auth
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["url"].startswith("http://testserver/unsubscribe/")
    assert body["headers"] == {
        "List-Unsubscribe": f"<{body['url']}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    unknown = client.post(
        "/v1/subjects/cust-api/unsubscribe-links", json={"purpose": "newsletter", "channel": "sms"}, headers=auth
    )
    assert unknown.status_code == 422
    assert unknown.json()["type"] == "/problems/channel-not-offered"


def test_unsubscribe_links_only_where_the_one_click_post_changes_something(
    client: TestClient, auth: dict[str, str]
) -> None:
    """A `necessary` purpose has nothing to withdraw or object to: no link (422 problem). A legitimate-interest
    channel gets one, and its one-click POST records the objection."""
    necessary = client.post(
        "/v1/subjects/cust-api/unsubscribe-links", json={"purpose": "essential", "channel": "web"}, headers=auth
    )
    assert necessary.status_code == 422
    assert necessary.headers["content-type"].startswith("application/problem+json")
    problem = necessary.json()
    assert problem["type"] == "/problems/not-unsubscribable"
    assert (problem["purpose"], problem["channel"]) == ("essential", "web")
    assert client.get("/problems/not-unsubscribable").status_code == 200

    objection = client.post(
        "/v1/subjects/cust-api/unsubscribe-links", json={"purpose": "offers", "channel": "post"}, headers=auth
    )
    assert objection.status_code == 200, objection.text
    url = objection.json()["url"].removeprefix("http://testserver")
    assert client.post(url, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    check = client.get(
        "/v1/consents/check", params={"subject": "cust-api", "purpose": "offers", "channel": "post"}, headers=auth
    )
    assert check.json()["reason"] == "objected"


def test_hostile_bodies_get_a_page_never_a_crash(client: TestClient) -> None:
    token = issue(client)
    csrf = hidden(client.get("/preferences", params={"token": token}).text, "csrf")
    broken = {"Content-Type": "multipart/form-data; boundary=zzz"}
    assert client.post("/preferences/toggle", content=b"--zzz\r\nnonsense", headers=broken).status_code == 403
    assert client.post(f"/unsubscribe/{token}", content=b"\xff\xfe", headers=broken).status_code == 403
    json_body = client.post("/preferences/toggle", json={"token": token, "csrf": csrf})
    assert json_body.status_code in (403, 200) and json_body.status_code < 500
    for value in ("", "offers", "offers:sms", "offers:sms:maybe", "nope:sms:on", "offers:fax:on", "x" * 5000):
        answer = client.post("/preferences/toggle", data={"token": token, "csrf": csrf, "set": value})
        assert answer.status_code == 400, value
    huge = client.post("/preferences/toggle", content=b"a=" + b"x" * 70_000, headers={"Content-Type": FORM})
    assert huge.status_code == 403
    assert events(client) == 0


FORM = "application/x-www-form-urlencoded"
