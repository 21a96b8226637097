"""GPC is enforced by the server, not only by the banner script: under `Sec-GPC: 1` (or `gpc: true`) a record that
claims marketing without the visitor's own marketing switch (method `save`) is recorded without it, as a refusal
(11 CCR § 7025(c)(3); Colorado 4 CCR 904-3, Rule 5.09)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from server.app import create_app
from server.settings import Settings
from tests.helpers.banner import VISITOR, choice, ledger, post
from tests.helpers.clock import Clock

EVERY_CATEGORY = ["preferences", "analytics", "marketing"]


@pytest.fixture
def visitor(settings: Settings, clock: Clock) -> Iterator[TestClient]:
    with TestClient(create_app(settings, clock=clock), raise_server_exceptions=False, client=VISITOR) as client:
        yield client


def _decided(visitor: TestClient) -> dict[str, tuple[str, str, bool]]:
    return {e["purpose"]: (e["action"], e["status"], e["evidence"]["gpc"]) for e in ledger(visitor)}


@pytest.mark.parametrize("signal", ["header", "body"])
def test_accept_all_claiming_marketing_under_gpc_is_recorded_without_it(visitor: TestClient, signal: str) -> None:
    body = choice(visitor, "accept_all", EVERY_CATEGORY)
    if signal == "body":
        body["gpc"] = True  # navigator.globalPrivacyControl, as the banner script sends it
    headers = {"Sec-GPC": "1"} if signal == "header" else {}
    answer = post(visitor, body, **headers)
    assert answer.status_code == 200, answer.text
    assert {(e["purpose"], e["action"]) for e in answer.json()["events"]} == {
        ("personalisation", "grant"),
        ("analytics", "grant"),
        ("ads", "deny"),
    }
    assert _decided(visitor)["ads"] == ("deny", "refused", True)


def test_the_marketing_switch_itself_grants_marketing_under_gpc(visitor: TestClient) -> None:
    answer = post(visitor, choice(visitor, "save", ["marketing"]), **{"Sec-GPC": "1"})
    assert answer.status_code == 200, answer.text
    assert _decided(visitor)["ads"] == ("grant", "granted", True)


def test_without_gpc_accept_all_grants_marketing(visitor: TestClient) -> None:
    assert post(visitor, choice(visitor, "accept_all", EVERY_CATEGORY)).status_code == 200
    assert _decided(visitor)["ads"] == ("grant", "granted", False)
