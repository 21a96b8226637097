"""The preference center page: what it shows, what a click records (with proof of display), unsubscribe from all
marketing in one POST, re-consent with a diff, languages; on both databases."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from server.models import ConsentEvent, PolicyVersion, Subject, UISnapshot
from server.settings import Settings
from tests.helpers.api import record
from tests.helpers.app import run, services_of
from tests.helpers.busy import sqlite_write_lock_held

REF = "cust-page"
HTMX = {"HX-Request": "true"}


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    return settings.with_overrides(mail_dir=tmp_path / "mail")


def open_page(client: TestClient, ref: str = REF, **params: str) -> tuple[str, str, str]:
    """(token, csrf, html) of the page opened with a fresh link."""
    token, _ = services_of(client).links.issue(ref, "preferences")
    page = client.get("/preferences", params={"token": token, **params})
    assert page.status_code == 200, page.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf
    return token, csrf.group(1), page.text


def fragment(page: str, element_id: str) -> str:
    """The exact text of a fragment as the page showed it (between its form's hidden fields and `</form>`)."""
    match = re.search(rf'(<(div|section) class="[^"]*" id="{element_id}".*?</\2>)\n</form>', page, re.DOTALL)
    assert match, f"no fragment {element_id}"
    return match.group(1)


async def _events(ref: str) -> list[dict[str, Any]]:
    subject = await Subject.get(ref=ref)
    return (
        await ConsentEvent.filter(subject_id=subject.id)
        .order_by("seq")
        .values(
            "seq",
            "purpose_id",
            "channel_id",
            "action",
            "status",
            "touchpoint",
            "method",
            "actor_type",
            "actor_id",
            "ui_snapshot_sha256",
            "evidence",
            "recorded_at",
            "policy_version__document",
            "policy_version__version",
            "policy_version__lang",
        )
    )


def events(client: TestClient, ref: str = REF) -> list[dict[str, Any]]:
    return list(run(client, _events, ref))


def policy_of(event: dict[str, Any]) -> str:
    return f"{event['policy_version__document']}/{event['policy_version__version']}/{event['policy_version__lang']}"


async def _snapshot(sha: str) -> tuple[str, str]:
    row = await UISnapshot.get(sha256=sha)
    return row.kind, row.content


def check(client: TestClient, auth: dict[str, str], purpose: str, channel: str, ref: str = REF) -> str:
    answer = client.get(
        "/v1/consents/check", params={"subject": ref, "purpose": purpose, "channel": channel}, headers=auth
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["reason"])


def test_page_shows_every_purpose_with_the_right_control(client: TestClient) -> None:
    _, _, page = open_page(client, lang="en")
    assert '<html lang="en">' in page
    # consent: a switch, off by default (GDPR 4(11): nothing pre-ticked)
    assert re.search(r'role="switch" id="sw-offers-sms" [^>]*aria-checked="false"', page)
    assert page.count('aria-checked="true"') == 0
    # legitimate interest: an objection button (GDPR 21), necessary: always on, no control
    assert 'value="offers:post:object"' in page and "Object: stop Demo Shop offers by post" in page
    assert 'id="sw-essential-web"' not in page and "always on" in page
    # title, description, legal basis, third parties and the policy version with its permanent URL
    assert "Partner offers" in page and "Voyages Horizon SARL, Maison Verte SA" in page
    assert '<a href="/policies/privacy-policy/2/en" hreflang="en">Privacy Policy, version 2</a>' in page
    assert '<a href="/policies/cookie-policy/1/en" hreflang="en">Cookie Policy, version 1</a>' in page
    assert "Legal basis: your consent." in page
    assert 'id="pc-unsubscribe-all"' in page
    assert 'role="status"' in page


def test_a_toggle_records_the_row_as_shown(client: TestClient, auth: dict[str, str]) -> None:
    token, csrf, page = open_page(client)
    shown = fragment(page, "row-offers")
    answer = client.post(
        "/preferences/toggle",
        data={"token": token, "csrf": csrf, "lang": "fr", "set": "offers:sms:on"},
        headers={**HTMX, "User-Agent": "pytest-browser/1.0"},
    )
    assert answer.status_code == 200, answer.text
    # htmx gets only the new row and the status message (out of band, for the live region)
    assert answer.text.startswith('<div class="pc-row" id="row-offers">')
    assert re.search(r'id="sw-offers-sms" [^>]*aria-checked="true"', answer.text)
    assert '<div id="pc-status" hx-swap-oob="innerHTML">Enregistré' in answer.text
    (event,) = events(client)
    assert (event["purpose_id"], event["channel_id"], event["action"], event["status"]) == (
        "offers",
        "sms",
        "grant",
        "granted",
    )
    assert (event["touchpoint"], event["method"], event["actor_type"], event["actor_id"]) == (
        "preference_center",
        "toggle",
        "subject",
        None,
    )
    assert policy_of(event) == "privacy-policy/2/fr"
    assert event["evidence"]["user_agent"] == "pytest-browser/1.0"
    # proof of display: the exact fragment shown, stored once under its hash
    assert event["ui_snapshot_sha256"] == hashlib.sha256(shown.encode()).hexdigest()
    assert run(client, _snapshot, event["ui_snapshot_sha256"]) == ("preference_center", shown)
    assert check(client, auth, "offers", "sms") == "granted"

    # off again: a withdrawal (GDPR 7(3): as easy as the grant, one click)
    answer = client.post(
        "/preferences/toggle",
        data={"token": token, "csrf": csrf, "lang": "fr", "set": "offers:sms:off"},
        headers=HTMX,
    )
    assert re.search(r'id="sw-offers-sms" [^>]*aria-checked="false"', answer.text)
    assert [e["action"] for e in events(client)] == ["grant", "withdraw"]
    assert check(client, auth, "offers", "sms") == "withdrawn"
    # a stale second click records nothing
    client.post("/preferences/toggle", data={"token": token, "csrf": csrf, "set": "offers:sms:off"}, headers=HTMX)
    assert len(events(client)) == 2


@pytest.mark.parametrize("backend", ["sqlite"])  # SQLite's one write lock; PostgreSQL waits for the row
def test_a_toggle_met_by_a_busy_database_says_nothing_was_saved(
    client: TestClient, auth: dict[str, str], settings: Settings
) -> None:
    """The person sees, in their language, that their choice was not saved and can be sent again (503)."""
    token, csrf, _ = open_page(client)
    form = {"token": token, "csrf": csrf, "lang": "fr", "set": "offers:sms:on"}
    with sqlite_write_lock_held(client, settings):
        busy = client.post("/preferences/toggle", data=form, headers=HTMX)
    assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
    assert 'hx-swap-oob="innerHTML">Rien n&#39;a été enregistré' in busy.text
    assert check(client, auth, "offers", "sms") == "unknown_subject"  # nothing recorded, not even the subject
    assert client.post("/preferences/toggle", data=form, headers=HTMX).status_code == 200
    assert check(client, auth, "offers", "sms") == "granted" and len(events(client)) == 1


def test_without_javascript_a_toggle_answers_with_the_whole_page(client: TestClient, auth: dict[str, str]) -> None:
    token, csrf, _ = open_page(client)
    answer = client.post(
        "/preferences/toggle", data={"token": token, "csrf": csrf, "lang": "en", "set": "partners:email:on"}
    )
    assert answer.status_code == 200
    assert answer.text.startswith("<!doctype html>")
    assert '<div id="pc-status" class="pc-status" role="status"' in answer.text
    assert "Saved: Partner offers by email is on." in answer.text
    assert check(client, auth, "partners", "email") == "granted"


def test_objection_and_its_undoing(client: TestClient, auth: dict[str, str]) -> None:
    token, csrf, _ = open_page(client)
    assert check(client, auth, "offers", "post", ref="other") == "unknown_subject"
    client.post("/preferences/toggle", data={"token": token, "csrf": csrf, "set": "offers:post:object"})
    assert check(client, auth, "offers", "post") == "objected"
    client.post("/preferences/toggle", data={"token": token, "csrf": csrf, "set": "offers:post:unobject"})
    assert check(client, auth, "offers", "post") == "granted"
    assert [e["action"] for e in events(client)] == ["object", "grant"]
    answer = client.post("/preferences/toggle", data={"token": token, "csrf": csrf, "set": "essential:web:off"})
    assert answer.status_code == 400, "a necessary purpose is not switchable"
    assert len(events(client)) == 2


def test_unsubscribe_from_all_marketing_is_one_post(client: TestClient, auth: dict[str, str]) -> None:
    decisions = [
        ("offers", "email", "grant"),
        ("offers", "sms", "soft_opt_in"),
        ("partners", "sms", "grant"),
        ("newsletter", "email", "grant"),  # pending confirmation (double opt-in)
        ("personalisation", "email", "grant"),  # not marketing: untouched
        ("ads", "web", "grant"),
    ]
    assert record(client, auth, REF, decisions).status_code == 201
    token, csrf, page = open_page(client, lang="en")
    shown = fragment(page, "pc-all")
    answer = client.post(
        "/preferences/unsubscribe-all", data={"token": token, "csrf": csrf, "lang": "en"}, headers=HTMX
    )
    assert answer.status_code == 200
    assert answer.headers["hx-retarget"] == "#pc-content"
    assert "Done: you will no longer receive any marketing from us." in answer.text
    written = events(client)[len(decisions) :]
    assert {(e["purpose_id"], e["channel_id"], e["action"]) for e in written} == {
        ("offers", "email", "withdraw"),
        ("offers", "sms", "withdraw"),
        ("partners", "sms", "withdraw"),
        ("newsletter", "email", "withdraw"),
        ("ads", "web", "withdraw"),
        ("offers", "post", "object"),  # GDPR 21(3): marketing sent on legitimate interest stops too
    }
    assert len({e["recorded_at"] for e in written}) == 1, "one record call: one transaction, one instant"
    assert {e["method"] for e in written} == {"unsubscribe_all"}
    assert {e["ui_snapshot_sha256"] for e in written} == {hashlib.sha256(shown.encode()).hexdigest()}
    for purpose, channel, reason in [
        ("offers", "email", "withdrawn"),
        ("offers", "sms", "withdrawn"),
        ("offers", "post", "objected"),
        ("newsletter", "email", "withdrawn"),
        ("personalisation", "email", "granted"),
    ]:
        assert check(client, auth, purpose, channel) == reason, (purpose, channel)
    # a second click has nothing left to change
    again = client.post("/preferences/unsubscribe-all", data={"token": token, "csrf": csrf, "lang": "en"})
    assert "Nothing to change" in again.text
    assert len(events(client)) == len(decisions) + len(written)


def test_reconsent_shows_what_changed_since_the_accepted_version(client: TestClient, auth: dict[str, str]) -> None:
    # granted under privacy-policy v1; v2 is material for `partners` and in force since 2026-09-01
    assert record(client, auth, REF, [("partners", "email", "grant")], policy="privacy-policy/1/fr").status_code == 201
    assert check(client, auth, "partners", "email") == "reconsent_required"
    token, csrf, page = open_page(client, lang="en")
    shown = fragment(page, "reconsent-partners")
    assert "Partner offers: our policy has changed" in shown
    assert '<a href="/policies/privacy-policy/1/en" hreflang="en">Privacy Policy, version 1</a>' in shown
    assert "<h4>Partners <span" in shown
    assert '<ins><span class="pc-vh">[added:] </span> and phone number</ins>' in shown
    assert '<ins><span class="pc-vh">[added:] </span>Assurances Sereine SA (home and travel insurance).</ins>' in shown
    assert '<del><span class="pc-vh">[removed:] </span>Your phone number is not shared with them' in shown
    assert "Unchanged sections: Who we are, What data we collect" in shown
    assert re.search(r'id="sw-partners-email" [^>]*aria-checked="false"', page), "paused until answered"

    answer = client.post(
        "/preferences/reconsent",
        data={"token": token, "csrf": csrf, "lang": "en", "purpose": "partners", "answer": "accept"},
    )
    assert answer.status_code == 200
    assert 'id="reconsent-partners"' not in answer.text
    last = events(client)[-1]
    assert (last["action"], last["status"], last["method"], policy_of(last)) == (
        "grant",
        "granted",
        "reconsent",
        "privacy-policy/2/en",
    )
    assert last["ui_snapshot_sha256"] == hashlib.sha256(shown.encode()).hexdigest()
    assert check(client, auth, "partners", "email") == "granted"


def test_declining_reconsent_withdraws(client: TestClient, auth: dict[str, str]) -> None:
    assert record(client, auth, REF, [("partners", "sms", "grant")], policy="privacy-policy/1/fr").status_code == 201
    token, csrf, page = open_page(client)
    assert "Offres de nos partenaires\u00a0: notre politique a changé" in page
    answer = client.post(
        "/preferences/reconsent",
        data={"token": token, "csrf": csrf, "purpose": "partners", "answer": "decline"},
        headers=HTMX,
    )
    assert answer.headers["hx-retarget"] == "#pc-content"
    assert events(client)[-1]["action"] == "withdraw"
    assert check(client, auth, "partners", "sms") == "withdrawn"


def test_language_comes_from_the_subject_then_the_browser_then_the_switcher(
    client: TestClient, auth: dict[str, str]
) -> None:
    _, _, page = open_page(client)
    assert '<html lang="fr">' in page and "Vos préférences de communication" in page  # default: French
    token, _ = services_of(client).links.issue(REF, "preferences")
    browser = client.get("/preferences", params={"token": token}, headers={"Accept-Language": "de, en-GB;q=0.8"})
    assert '<html lang="en">' in browser.text and "Your communication preferences" in browser.text

    client.post("/v1/subjects/cust-page/preference-links", json={"locale": "fr"}, headers=auth)
    subject = client.get("/preferences", params={"token": token}, headers={"Accept-Language": "en"})
    assert '<html lang="fr">' in subject.text, "the subject's locale beats the browser"
    switched = client.get("/preferences", params={"token": token, "lang": "en"}, headers={"Accept-Language": "fr"})
    assert '<html lang="en">' in switched.text, "the switcher beats both"
    assert 'href="/preferences?lang=fr" lang="fr" hreflang="fr">Français</a>' in switched.text
    # policy texts follow the language
    assert "/policies/privacy-policy/2/en" in switched.text and "/policies/privacy-policy/2/fr" not in switched.text

    async def _versions() -> int:
        return await PolicyVersion.filter(lang="en").count()

    assert run(client, _versions) >= 2
