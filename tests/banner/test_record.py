"""`POST /v1/cookie-consents`: one banner choice becomes one ledger transaction with the text shown and a receipt."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import rfc8785
from joserfc import jws
from joserfc.jwk import KeySet
from starlette.testclient import TestClient

from server.app import create_app
from server.models import UISnapshot
from server.policies.sync import sync_policies
from server.settings import Settings
from tests.helpers.api import bearer
from tests.helpers.app import run, services_of
from tests.helpers.banner import CONSENT_ID, ORIGIN, VISITOR, choice, config, ledger, post
from tests.helpers.clock import Clock

WEB_PURPOSES = {"personalisation": "preferences", "analytics": "analytics", "ads": "marketing"}


@pytest.fixture
def visitor(settings: Settings, clock: Clock) -> Iterator[TestClient]:
    """The app as a browser at 203.0.113.7 sees it."""
    with TestClient(create_app(settings, clock=clock), raise_server_exceptions=False, client=VISITOR) as client:
        yield client


def test_accept_all_grants_every_web_purpose_in_one_transaction(visitor: TestClient) -> None:
    shown = config(visitor)
    response = post(
        visitor,
        choice(visitor, "accept_all", ["preferences", "analytics", "marketing"]),
        **{"User-Agent": "Mozilla/5.0 (banner test)"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert "Origin" in response.headers["vary"]
    body = response.json()
    assert body["policy_version"] == "cookie-policy/1/fr"
    assert body["touchpoint"] == "banner"
    events = ledger(visitor)
    assert {(e["purpose"], e["channel"], e["action"], e["status"]) for e in events} == {
        (purpose, "web", "grant", "granted") for purpose in WEB_PURPOSES
    }
    assert "essential" not in {e["purpose"] for e in events}, "the necessary category records nothing"
    assert len({e["recorded_at"] for e in events}) == 1, "one Ledger.record call, one instant"
    for event in events:
        assert event["touchpoint"] == "banner" and event["method"] == "accept_all"
        assert event["actor"] == {"type": "subject", "id": None}
        assert event["policy"]["document"] == "cookie-policy" and event["policy"]["version"] == "1"
        assert event["policy"]["sha256"] == shown["policy"]["fr"]["sha256"]
        assert event["ui_snapshot"] == shown["hash"]["fr"]
        # Invariant 9 (docs/design.md): the network, not the address.
        assert event["evidence"] == {
            "ip": "203.0.113.0/24",
            "user_agent": "Mozilla/5.0 (banner test)",
            "origin": ORIGIN,
            "gpc": False,
        }
    assert [e["id"] for e in body["events"]] == [e["id"] for e in events]


async def _snapshot(sha256: str) -> UISnapshot:
    return await UISnapshot.get(sha256=sha256)


def test_the_snapshot_is_the_exact_text_served_and_hashes_to_what_the_browser_sent(visitor: TestClient) -> None:
    shown = config(visitor)
    assert post(visitor, choice(visitor, "reject_all", [])).status_code == 200
    snapshot = run(visitor, _snapshot, shown["hash"]["fr"])
    assert snapshot.kind == "banner"
    assert hashlib.sha256(snapshot.content.encode()).hexdigest() == shown["hash"]["fr"]
    assert json.loads(snapshot.content) == shown["texts"]["fr"]
    assert snapshot.content.encode() == rfc8785.dumps(shown["texts"]["fr"])


def test_refusal_is_recorded_and_a_grant_is_ended_by_withdraw(visitor: TestClient) -> None:
    """CNIL: refusal is stored like consent. `deny` from `granted` is not a transition: a grant is withdrawn."""
    assert post(visitor, choice(visitor, "dismiss", [])).status_code == 200
    assert post(visitor, choice(visitor, "save", ["analytics"])).status_code == 200
    assert post(visitor, choice(visitor, "reject_all", [], lang="en")).status_code == 200
    events = ledger(visitor)
    by_method = [(e["method"], e["purpose"], e["action"], e["status"]) for e in events]
    assert by_method == [
        ("dismiss", "personalisation", "deny", "refused"),
        ("dismiss", "analytics", "deny", "refused"),
        ("dismiss", "ads", "deny", "refused"),
        ("save", "personalisation", "deny", "refused"),
        ("save", "analytics", "grant", "granted"),
        ("save", "ads", "deny", "refused"),
        ("reject_all", "personalisation", "deny", "refused"),
        ("reject_all", "analytics", "withdraw", "withdrawn"),
        ("reject_all", "ads", "deny", "refused"),
    ]
    assert [e["seq"] for e in events] == list(range(1, 10))
    assert events[-1]["policy"]["lang"] == "en"
    assert events[-1]["ui_snapshot"] == config(visitor)["hash"]["en"]


def test_the_check_api_answers_from_banner_records(visitor: TestClient) -> None:
    assert post(visitor, choice(visitor, "save", ["analytics"])).status_code == 200
    auth = bearer(visitor, "consent:check")
    answers = {
        purpose: visitor.get(
            "/v1/consents/check", params={"subject": CONSENT_ID, "purpose": purpose, "channel": "web"}, headers=auth
        ).json()
        for purpose in WEB_PURPOSES
    }
    assert {p: (a["allowed"], a["reason"]) for p, a in answers.items()} == {
        "personalisation": (False, "refused"),
        "analytics": (True, "granted"),
        "ads": (False, "refused"),
    }
    assert answers["analytics"]["policy_version"] == "cookie-policy/1/fr"


def test_the_receipt_is_a_jws_signed_with_a_published_key(visitor: TestClient) -> None:
    response = post(visitor, choice(visitor, "accept_all", ["preferences", "analytics", "marketing"]))
    body = response.json()
    keys = KeySet.import_key_set(visitor.get("/.well-known/jwks.json").json())
    verified = jws.deserialize_compact(body["receipt"], keys, algorithms=["ES256"])
    assert verified.headers()["alg"] == "ES256"
    assert verified.headers()["kid"] in {k["kid"] for k in visitor.get("/.well-known/jwks.json").json()["keys"]}
    claims = json.loads(verified.payload)
    assert claims["consent_id"] == CONSENT_ID
    assert claims["ui_snapshot"] == config(visitor)["hash"]["fr"]
    assert claims["policy"]["version"] == "cookie-policy/1/fr"
    assert isinstance(claims["iat"], int)
    assert [(e["id"], e["hash"]) for e in claims["events"]] == [(e["id"], e["hash"]) for e in ledger(visitor)]


def test_gpc_refuses_marketing_only_and_is_recorded_with_touchpoint_gpc(visitor: TestClient) -> None:
    response = post(visitor, choice(visitor, "gpc", []), **{"Sec-GPC": "1"})
    assert response.status_code == 200, response.text
    assert response.json()["touchpoint"] == "gpc"
    (event,) = ledger(visitor)
    assert (event["purpose"], event["action"], event["status"], event["touchpoint"], event["method"]) == (
        "ads",
        "deny",
        "refused",
        "gpc",
        "gpc",
    )
    assert event["evidence"]["gpc"] is True
    # With GPC, "accept all" leaves marketing to the visitor's own switch; the header alone marks the evidence.
    accept = choice(visitor, "accept_all", ["preferences", "analytics"])
    assert post(visitor, accept, **{"Sec-GPC": "1"}).status_code == 200
    latest = ledger(visitor)[1:]
    assert {(e["purpose"], e["action"]) for e in latest} == {
        ("personalisation", "grant"),
        ("analytics", "grant"),
        ("ads", "deny"),
    }
    assert all(e["evidence"]["gpc"] is True and e["touchpoint"] == "banner" for e in latest)


def test_preflight_answers_the_sites_origins_only(visitor: TestClient) -> None:
    asked = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    allowed = visitor.options("/v1/cookie-consents", headers={"Origin": ORIGIN, **asked})
    assert allowed.status_code == 204
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    assert allowed.headers["access-control-allow-methods"] == "POST"
    assert "content-type" in allowed.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in allowed.headers
    other = visitor.options("/v1/cookie-consents", headers={"Origin": "https://evil.example", **asked})
    assert other.status_code == 403
    assert other.headers["content-type"] == "application/problem+json"
    assert "access-control-allow-origin" not in other.headers
    config_preflight = visitor.options("/v1/banner/config?site=demo", headers={"Origin": ORIGIN, **asked})
    assert config_preflight.status_code == 204
    assert config_preflight.headers["access-control-allow-methods"] == "GET"


@pytest.fixture
def policy_copy(tmp_path: Path, settings: Settings) -> Path:
    return Path(shutil.copytree(settings.policy_dir, tmp_path / "policy_docs"))


def test_a_material_cookie_policy_version_makes_earlier_choices_stale(
    visitor: TestClient, policy_copy: Path, clock: Clock
) -> None:
    assert post(visitor, choice(visitor, "accept_all", ["preferences", "analytics", "marketing"])).status_code == 200
    old = choice(visitor, "save", ["analytics"])
    for lang in ("fr", "en"):
        source = (policy_copy / "cookie-policy" / "1" / f"{lang}.md").read_text()
        target = policy_copy / "cookie-policy" / "2" / f"{lang}.md"
        target.parent.mkdir(exist_ok=True)
        target.write_text(
            source.replace('version: "1"', 'version: "2"')
            .replace("material: false", "material: true")
            .replace("2026-01-01T00:00:00Z", "2026-03-01T00:00:00Z")
            + "\nVersion 2.\n"
        )
    run(visitor, sync_policies, policy_copy)
    run(visitor, services_of(visitor).catalog.reload)
    clock.advance(minutes=2)  # past the config's one-minute freshness
    shown = config(visitor)
    assert shown["stale"] == ["1"]
    assert shown["policy"]["fr"]["version"] == "2"
    assert shown["texts"]["fr"]["policy"] == "Politique de cookies (version 2)"
    assert shown["hash"]["fr"] != old["text_sha256"]
    auth = bearer(visitor, "consent:check")
    check = {"subject": CONSENT_ID, "purpose": "analytics", "channel": "web"}
    assert visitor.get("/v1/consents/check", params=check, headers=auth).json()["reason"] == "reconsent_required"
    # A choice made on a page that still showed version 1 is recorded under version 1 (what was shown)...
    assert post(visitor, old).json()["policy_version"] == "cookie-policy/1/fr"
    # ... and the new text under version 2, after which the grant counts again.
    assert post(visitor, choice(visitor, "save", ["analytics"])).json()["policy_version"] == "cookie-policy/2/fr"
    assert visitor.get("/v1/consents/check", params=check, headers=auth).json()["allowed"] is True
