"""Nothing that allows processing again is recorded for an erased person (GDPR 17), on any touchpoint: the API and
the banner answer problem+json `/problems/subject-erased` (409), the console and the preference center their own
page; nothing is written. A refusal or a withdrawal is still recorded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from server.models import ConsentEvent
from server.settings import Settings
from tests.helpers import banner
from tests.helpers.api import record
from tests.helpers.app import services_of
from tests.helpers.console import count, new_staff, open_via_console, post, record_api, sign_in


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    return settings.with_overrides(mail_dir=tmp_path / "mail")


def _erase(client: TestClient, ref: str) -> None:
    supervisor = new_staff(client, "supervisor")
    csrf = sign_in(client, email=supervisor.email)
    request_id = open_via_console(client, csrf, ref, "erasure")
    answer = post(client, csrf, f"/console/requests/{request_id}/fulfil", {"confirm": "yes"})
    assert answer.status_code == 303, answer.text
    client.cookies.clear()


def _refused(answer: Any) -> None:
    assert answer.status_code == 409, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["type"] == "/problems/subject-erased"


def test_the_api_refuses_a_grant_for_an_erased_subject(client: TestClient, auth: dict[str, str]) -> None:
    record_api(client, auth, "gone", [("offers", "email", "grant"), ("offers", "sms", "grant")])
    _erase(client, "gone")
    events = count(client, ConsentEvent, subject__ref="gone")
    for action in ("grant", "confirm"):
        extra = {"touchpoint": "import"} if action == "confirm" else {}
        _refused(record(client, auth, "gone", [("offers", "phone", action)], **extra))
    # One grant among withdrawals refuses the whole call: nothing is written.
    _refused(record(client, auth, "gone", [("offers", "email", "withdraw"), ("offers", "post", "grant")]))
    assert count(client, ConsentEvent, subject__ref="gone") == events
    documented = client.get("/problems/subject-erased")
    assert documented.status_code == 200 and "GDPR 17" in documented.text
    # What lessens processing is still recorded, and the check answers `erased` whatever the ledger says.
    withdrawn = record(client, auth, "gone", [("offers", "email", "withdraw")])
    assert withdrawn.status_code == 201, withdrawn.text
    check = client.get(
        "/v1/consents/check", params={"subject": "gone", "purpose": "offers", "channel": "sms"}, headers=auth
    )
    assert check.json()["reason"] == "erased"


def test_the_console_refuses_to_record_for_an_erased_customer(client: TestClient, auth: dict[str, str]) -> None:
    record_api(client, auth, "gone-desk", [("offers", "email", "grant")])
    _erase(client, "gone-desk")
    csrf = sign_in(client, "agent")
    answer = post(client, csrf, "/console/customers/gone-desk/record", {"target": "offers:phone", "action": "grant"})
    assert answer.status_code == 409 and answer.headers["content-type"].startswith("text/html"), answer.text
    assert "erased" in answer.text
    assert count(client, ConsentEvent, subject__ref="gone-desk", channel_id="phone") == 0


def test_the_preference_center_shows_the_erased_page_and_records_nothing(
    client: TestClient, auth: dict[str, str]
) -> None:
    record_api(client, auth, "gone-pc", [("offers", "email", "grant")])
    token, _ = services_of(client).links.issue("gone-pc", "preferences")
    opened = client.get("/preferences", params={"token": token, "lang": "en"})
    assert opened.status_code == 200
    csrf = opened.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    _erase(client, "gone-pc")
    events = count(client, ConsentEvent, subject__ref="gone-pc")
    answer = client.post(
        "/preferences/toggle", data={"token": token, "csrf": csrf, "lang": "en", "set": "offers:sms:on"}
    )
    assert answer.status_code == 410 and "Your data was erased" in answer.text, answer.text
    assert count(client, ConsentEvent, subject__ref="gone-pc") == events


def test_the_banner_refuses_an_acceptance_for_an_erased_visitor(client: TestClient, auth: dict[str, str]) -> None:
    accepted = banner.post(client, banner.choice(client, "accept_all", ["preferences", "analytics", "marketing"]))
    assert accepted.status_code == 200, accepted.text
    _erase(client, banner.CONSENT_ID)
    events = count(client, ConsentEvent, subject__ref=banner.CONSENT_ID)
    again = banner.post(client, banner.choice(client, "accept_all", ["preferences", "analytics", "marketing"]))
    _refused(again)
    assert again.headers["access-control-allow-origin"] == banner.ORIGIN, "the banner can read why"
    assert count(client, ConsentEvent, subject__ref=banner.CONSENT_ID) == events
