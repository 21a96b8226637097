"""The service desk's acceptance walk in Debian's chromium, against a real server process and a real OpenID Connect
provider on loopback (e2e/oidc_provider.py):

1. an agent signs in through the provider, finds a customer, records a phone consent, and the check API answers
   `granted` for an event with touchpoint `agent`;
2. an access request is opened, fulfilled, and the export downloaded;
3. a supervisor erases the customer: `ledger verify` passes, a dump of every table holds no trace of the email,
   and the check API answers `erased`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from e2e.conftest import LiveServer, screenshot, start_server, stop_server
from e2e.oidc_provider import OidcProvider
from server.dsr.deadlines import add_months

EMAIL = "grace.hopper@example.net"
REF = "cust-e2e-42"


@pytest.fixture
def browser_context_args(browser_context_args: dict[str, Any]) -> dict[str, Any]:
    """axe-core is injected as an inline script, which the console's CSP (script-src 'self') would block."""
    return {**browser_context_args, "bypass_csp": True, "accept_downloads": True}


@pytest.fixture
def idp() -> Iterator[OidcProvider]:
    with OidcProvider({"sub": "agent-7", "email": "ana@corp.example", "name": "Ana Agent", "roles": ["agent"]}) as p:
        yield p


def start_desk_server(data_dir: Path, provider: OidcProvider) -> LiveServer:
    """A server whose staff sign in through `provider`."""
    return start_server(
        data_dir,
        extra_env={
            "OIDC_ISSUER": provider.issuer,
            "OIDC_CLIENT_ID": provider.client_id,
            "OIDC_CLIENT_SECRET": provider.client_secret,
            "CHECKPOINT_INTERVAL_SECONDS": "0",
        },
    )


@pytest.fixture
def desk_server(tmp_path: Path, idp: OidcProvider) -> Iterator[LiveServer]:
    server = start_desk_server(tmp_path, idp)
    try:
        yield server
    finally:
        stop_server(server)


def seed_customer(server: LiveServer, headers: dict[str, str]) -> None:
    body = {
        "policy": {"document": "privacy-policy", "version": "1", "lang": "en"},
        "decisions": [
            {"purpose": "offers", "channel": "email", "action": "grant"},
            {"purpose": "partners", "channel": "sms", "action": "deny"},
        ],
    }
    assert httpx.post(f"{server.url}/v1/subjects/{REF}/consents", json=body, headers=headers).status_code == 201
    link = httpx.post(
        f"{server.url}/v1/subjects/{REF}/preference-links", json={"email": EMAIL, "locale": "en"}, headers=headers
    )
    assert link.status_code == 200, link.text


def check(server: LiveServer, headers: dict[str, str], purpose: str, channel: str) -> dict[str, Any]:
    answer = httpx.get(
        f"{server.url}/v1/consents/check",
        params={"subject": REF, "purpose": purpose, "channel": channel},
        headers=headers,
    )
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def oidc_sign_in(page: Any, server: LiveServer) -> None:
    page.goto(f"{server.url}/console")
    assert "/console/login" in page.url
    page.get_by_role("link", name="Sign in with your company account").click()
    page.wait_for_url(f"{server.url}/console")


def dump_every_table(database: Path) -> str:
    """SELECT * from every table of the server's SQLite database."""
    with sqlite3.connect(database) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        dump = []
        for table in tables:
            rows = conn.execute(f'SELECT * FROM "{table}"').fetchall()
            dump.append(f"{table}: {rows!r}")
        return "\n".join(dump)


def test_agent_records_a_phone_consent_then_access_and_erasure(
    page: Any, desk_server: LiveServer, idp: OidcProvider, axe: Any, tmp_path: Path
) -> None:
    server = desk_server
    headers = server.token()
    seed_customer(server, headers)

    # 1. sign in through the provider, find the customer, record a phone consent
    oidc_sign_in(page, server)
    assert page.get_by_text("Ana Agent (agent)").is_visible()
    page.get_by_label("Customer ref, email or phone").fill("grace.hop")
    page.get_by_role("link", name=REF).click()  # search-as-you-type (htmx)
    page.wait_for_url(f"{server.url}/console/customers/{REF}")
    page.get_by_label("Purpose and channel").select_option("offers:phone")
    page.wait_for_function("document.querySelector('#script blockquote').textContent.includes('by phone')")
    page.get_by_label("Call or ticket reference").fill("CALL-77")
    page.get_by_role("button", name="Record the decision").click()
    page.get_by_text("Recorded: offers/phone grant → granted").wait_for()
    assert page.locator("#customer-live tbody tr").filter(has_text="agent / phone_call").count() == 1
    assert axe(page) == []
    screenshot(page, "desk-customer")

    answer = check(server, headers, "offers", "phone")
    assert answer["allowed"] is True and answer["reason"] == "granted"
    events = httpx.get(f"{server.url}/v1/subjects/{REF}/events", headers=headers).json()["events"]
    recorded = next(e for e in events if e["id"] == answer["event_id"])
    assert recorded["touchpoint"] == "agent" and recorded["actor"]["type"] == "agent"

    # 2. an access request: opened, fulfilled, the export downloaded
    page.get_by_label("Kind").select_option("access")
    page.get_by_role("button", name="Open the request").click()
    page.wait_for_url(f"{server.url}/console/requests/*")
    page.get_by_role("button", name="Send the export link").click()
    page.get_by_role("heading", name="Download links for the customer").wait_for()
    assert axe(page) == []
    with page.expect_download() as download:
        page.get_by_role("link", name="Export (JSON)").click()
    saved = tmp_path / "export.json"
    download.value.save_as(saved)
    exported = json.loads(saved.read_text())
    assert exported["subject"]["email"] == EMAIL and exported["subject"]["ref"] == REF
    assert any(e["touchpoint"] == "agent" for e in exported["events"])
    assert list((server.data_dir / "mail").glob("*.eml")), "the link was mailed to the customer"

    # 3. the agent opens an erasure request; a supervisor carries it out
    page.goto(f"{server.url}/console/customers/{REF}")
    page.get_by_label("Kind").select_option("erasure")
    page.get_by_role("button", name="Open the request").click()
    page.wait_for_url(f"{server.url}/console/requests/*")
    erasure_url = page.url
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{server.url}/console/login")
    idp.user = {"sub": "sup-1", "email": "sam@corp.example", "name": "Sam Supervisor", "roles": ["supervisor"]}
    oidc_sign_in(page, server)
    page.goto(erasure_url)
    page.get_by_label("I checked the customer's identity and no exemption of GDPR 17(3) applies").check()
    page.get_by_role("button", name="Erase the customer's contact data").click()
    page.get_by_text("done: contact data erased").wait_for()
    screenshot(page, "desk-erasure")

    assert "OK" in server.cli("ledger", "verify")
    dump = dump_every_table(server.data_dir / "db.sqlite3")
    assert "consent_events" in dump and "dsr_requests" in dump
    assert EMAIL not in dump and "grace.hopper" not in dump.lower()
    assert check(server, headers, "offers", "phone")["reason"] == "erased"
    assert check(server, headers, "offers", "email")["allowed"] is False


def last_31st_before_a_shorter_month() -> date:
    """The latest 31st, over a month ago and less than a year ago (the console refuses older dates), whose next
    month has no 31st: its request is overdue and due on that month's last day."""
    day = datetime.now(ZoneInfo("Europe/Paris")).date() - timedelta(days=62)
    while day.day != 31 or add_months(day, 1).day == 31:
        day -= timedelta(days=1)
    return day


def test_overdue_requests_are_flagged_in_the_queue(page: Any, desk_server: LiveServer, axe: Any) -> None:
    server = desk_server
    seed_customer(server, server.token())
    page.goto(f"{server.url}/console/login")
    assert axe(page) == []
    oidc_sign_in(page, server)
    page.goto(f"{server.url}/console/customers/{REF}")
    page.get_by_label("Kind").select_option("access")
    received = last_31st_before_a_shorter_month()
    due = add_months(received, 1)
    page.get_by_label("Received on").fill(received.isoformat())
    page.get_by_role("button", name="Open the request").click()
    page.wait_for_url(f"{server.url}/console/requests/*")
    assert due.day < 31 and page.locator("dd").filter(has_text=due.isoformat()).is_visible(), (
        f"received {received}, due the last day of the next month, {due}"
    )
    page.goto(f"{server.url}/console/requests")
    row = page.locator("tr.desk-overdue")
    assert row.count() == 1 and "overdue by" in row.inner_text()
    assert axe(page) == []
    screenshot(page, "desk-queue")


def test_a_supervisor_records_a_breach_and_downloads_its_notification(tmp_path: Path, page: Any, axe: Any) -> None:
    """GDPR 33: the register's forms in a browser (datetime-local in the controller's time, checkboxes, the risk),
    the 72-hour clock, the notification recorded, and the notification's content downloaded."""
    claims = {"sub": "sup-1", "email": "sam@corp.example", "name": "Sam Supervisor", "roles": ["supervisor"]}
    with OidcProvider(claims) as provider:
        server = start_desk_server(tmp_path, provider)
        try:
            oidc_sign_in(page, server)
            page.get_by_role("link", name="Breaches").click()
            page.wait_for_url(f"{server.url}/console/breaches")
            assert axe(page) == []
            page.get_by_label("Title", exact=True).fill("Newsletter export on a public link")
            aware = page.get_by_label("Aware since (Europe/Paris)")
            aware.fill(aware.input_value()[:11] + "00:00")  # today, midnight in Paris: the clock has been running
            page.get_by_label("Confidentiality: data disclosed").check()
            page.get_by_label("What happened (nature of the breach)").fill("A CSV export was reachable by link.")
            page.get_by_label("People concerned (approx.)").fill("12,500")
            page.get_by_role("button", name="Record the breach").click()
            page.wait_for_url(f"{server.url}/console/breaches/1?done=recorded")
            assert page.get_by_text("Its 72 hours run from when you became aware of it.").is_visible()
            assert page.locator("dd").filter(has_text="h left").count() == 1
            assert page.locator("dd").filter(has_text="12,500").is_visible()
            assert axe(page) == []
            page.get_by_label("Risk to people's rights and freedoms").select_option("risk")
            page.get_by_label("What changed and why (kept in the trail)").fill("Assessed with the DPO.")
            page.get_by_role("button", name="Save the changes").click()
            page.wait_for_url(f"{server.url}/console/breaches/1?done=update")
            page.get_by_label("The authority's reference").fill("CNIL-2026-77")
            page.get_by_role("button", name="Record the notification").click()
            page.wait_for_url(f"{server.url}/console/breaches/1?done=notified")
            assert "CNIL-2026-77" in page.locator("main").inner_text()
            trail = page.locator("table").filter(has_text="Every change to this breach").inner_text()
            assert "Risk: unassessed → risk" in trail and "Assessed with the DPO." in trail
            with page.expect_download() as download:
                page.get_by_role("link", name="For the authority and the people concerned (Markdown)").click()
            text = Path(download.value.path()).read_text()
            assert "# Personal data breach #1: Newsletter export on a public link" in text
            assert "Approximate number of people concerned: 12,500" in text and "CNIL-2026-77" in text
            screenshot(page, "desk-breach")
            page.get_by_role("link", name="Record", exact=True).click()
            page.wait_for_url(f"{server.url}/console/record")
            assert page.get_by_role("heading", name="Record of processing activities").is_visible()
            assert page.get_by_text("Not declared yet").count() == 0  # the demo declares the whole record
            assert axe(page) == []
        finally:
            stop_server(server)


def test_a_stale_console_tab_says_its_form_expired(page: Any, desk_server: LiveServer) -> None:
    """Signed out and in again in another tab, the first tab's buttons carry the old session's form token: the
    refusal must show (htmx 2 swaps no 4xx answer, so a 403 left the button seemingly doing nothing)."""
    server = desk_server
    seed_customer(server, server.token())
    oidc_sign_in(page, server)
    page.goto(f"{server.url}/console/customers/{REF}")
    other = page.context.new_page()
    other.goto(f"{server.url}/console")
    other.get_by_role("button", name="Sign out").click()
    other.wait_for_url(f"{server.url}/console/login")
    oidc_sign_in(other, server)
    page.bring_to_front()
    mails = len(list((server.data_dir / "mail").glob("*.eml")))
    page.get_by_role("button", name="Email a preference-center link").click()
    page.locator("#flash").get_by_text("The form expired or came from another site.").wait_for(timeout=5000)
    assert len(list((server.data_dir / "mail").glob("*.eml"))) == mails, "nothing was sent"
