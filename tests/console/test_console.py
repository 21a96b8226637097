"""The console: sign-in with local accounts (argon2, CSRF, lockout, sign-out), search, the customer page, recording
a phone consent on a customer's behalf (touchpoint `agent`, the script read stored as the UI snapshot), approved
answers, and every staff action in the access log (GDPR 5(2), 25, 32)."""

from __future__ import annotations

import json
import re
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from starlette.testclient import TestClient

from server.models import AccessLog, ConsentEvent, StaffAccount, UISnapshot
from server.settings import Settings
from server.staff import accounts, throttle
from tests.helpers.app import run, services_of
from tests.helpers.busy import sqlite_write_lock_held
from tests.helpers.console import (
    PASSWORD,
    check,
    count,
    csrf_of,
    fetch,
    new_staff,
    post,
    record_api,
    set_contact,
    sign_in,
)


def _record_form(client: TestClient, ref: str, **values: str) -> dict[str, str]:
    """The record form as the page offers it, with the script hash the page shows for these values."""
    form = {"target": "offers:phone", "action": "grant", "policy": "privacy-policy/1/en", "method": "phone_call"}
    form.update(values)
    preview = client.get(f"/console/customers/{ref}/script", params=form, headers={"HX-Request": "true"})
    assert preview.status_code == 200, preview.text
    sha = re.search(r'name="script_sha256" value="([0-9a-f]{64})"', preview.text)
    assert sha, preview.text
    return {**form, "script_sha256": sha.group(1), "reference": values.get("reference", "CALL-1")}


def test_sign_in_page_and_wrong_password_give_one_generic_message(client: TestClient) -> None:
    staff = new_staff(client, "agent")
    page = client.get("/console/login")
    assert page.status_code == 200
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert page.headers["x-frame-options"] == "DENY"
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token
    wrong = client.post("/console/login", data={"email": staff.email, "password": "nope", "csrf": token.group(1)})
    unknown = client.post(
        "/console/login", data={"email": "nobody@staff.example", "password": "nope", "csrf": token.group(1)}
    )
    assert wrong.status_code == unknown.status_code == 400
    assert "not right, or the account is locked" in wrong.text and "not right, or the account is locked" in unknown.text
    # no session cookie, and the console still sends you to sign in
    assert "desk_session" not in client.cookies
    assert client.get("/console", follow_redirects=False).headers["location"].startswith("/console/login")


@pytest.mark.parametrize("backend", ["sqlite"])  # SQLite's one write lock; PostgreSQL waits for the row
def test_a_sign_in_met_by_a_busy_database_shows_the_sign_in_page_again(client: TestClient, settings: Settings) -> None:
    """Signing in writes (the access log, the failure counter): while another process holds the database, the agent
    gets the sign-in page saying so (503, Retry-After), not a JSON error, and no session; then signs in."""
    staff = new_staff(client, "agent")
    page = client.get("/console/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token
    form = {"email": staff.email, "password": PASSWORD, "csrf": token.group(1), "next": "/console"}
    with sqlite_write_lock_held(client, settings):
        busy = client.post("/console/login", data=form, follow_redirects=False)
    assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
    assert busy.headers["content-type"].startswith("text/html")
    assert "The database is busy: you were not signed in." in busy.text
    assert "desk_session" not in client.cookies
    again = re.search(r'name="csrf" value="([^"]+)"', busy.text)
    assert again
    signed_in = client.post("/console/login", data={**form, "csrf": again.group(1)}, follow_redirects=False)
    assert signed_in.status_code == 303 and "desk_session" in client.cookies


@pytest.mark.real_password_cost
def test_passwords_are_stored_as_argon2id_at_the_default_cost(client: TestClient) -> None:
    """The rest of the suite hashes at argon2's lowest cost to save time (conftest); what is stored is this."""
    staff = new_staff(client, "agent")
    stored = fetch(client, StaffAccount, id=staff.id).password_hash
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$"), stored
    assert sign_in(client, email=staff.email)


def test_a_hash_made_at_another_cost_is_remade_at_sign_in(client: TestClient) -> None:
    """Raising argon2's cost later upgrades each account at its next sign-in (the password is known then)."""
    staff = new_staff(client, "agent")  # hashed at the suite's lowest cost (conftest)
    assert "m=8,t=1,p=1" in fetch(client, StaffAccount, id=staff.id).password_hash
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(accounts, "_hasher", PasswordHasher(time_cost=2, memory_cost=16, parallelism=1))
        assert sign_in(client, email=staff.email)
    remade = fetch(client, StaffAccount, id=staff.id).password_hash
    assert remade.startswith("$argon2id$v=19$m=16,t=2,p=1$"), remade
    assert sign_in(client, email=staff.email)  # and the new hash checks


def test_sign_in_needs_the_form_token(client: TestClient) -> None:
    staff = new_staff(client, "agent")
    client.get("/console/login")
    answer = client.post("/console/login", data={"email": staff.email, "password": PASSWORD, "csrf": "forged"})
    assert answer.status_code == 400 and "The form expired" in answer.text
    assert "desk_session" not in client.cookies


def test_five_failures_lock_the_account(client: TestClient) -> None:
    staff = new_staff(client, "agent")
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/console/login").text)
    assert token
    for _ in range(5):
        client.post("/console/login", data={"email": staff.email, "password": "wrong", "csrf": token.group(1)})
    locked = client.post("/console/login", data={"email": staff.email, "password": PASSWORD, "csrf": token.group(1)})
    assert locked.status_code == 400, "the right password does not open a locked account"

    assert run(client, throttle.locked, throttle.account_key(staff.id), services_of(client).clock().timestamp())


def test_session_cookie_is_signed_http_only_lax_and_scoped_to_the_console(client: TestClient) -> None:
    staff = new_staff(client, "agent")
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/console/login").text)
    assert token
    answer = client.post(
        "/console/login",
        data={"email": staff.email, "password": PASSWORD, "csrf": token.group(1)},
        follow_redirects=False,
    )
    cookie = next(v for k, v in answer.headers.multi_items() if k == "set-cookie" and v.startswith("desk_session="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/console" in cookie and "Max-Age=28800" in cookie
    value = cookie.split(";")[0].split("=", 1)[1]
    tampered = value[:-2] + ("AA" if not value.endswith("AA") else "BB")
    client.cookies.clear()
    client.cookies.set("desk_session", tampered, path="/console")
    assert client.get("/console", follow_redirects=False).status_code == 303


def test_sign_out_ends_the_session_even_for_a_copied_cookie(client: TestClient) -> None:
    csrf = sign_in(client, "agent")
    copied = client.cookies.get("desk_session")
    assert client.get("/console").status_code == 200
    answer = post(client, csrf, "/console/logout")
    assert answer.status_code == 303 and answer.headers["location"] == "/console/login"
    client.cookies.set("desk_session", copied or "", path="/console")
    assert client.get("/console", follow_redirects=False).status_code == 303


def test_every_form_needs_the_csrf_token(client: TestClient) -> None:
    sign_in(client, "agent")
    for path in ("/console/logout", "/console/customers/c1/record", "/console/customers/c1/requests"):
        answer = client.post(path, data={"csrf": "forged"}, follow_redirects=False)
        assert answer.status_code == 403 and "The form expired" in answer.text, path
    # a valid token from another site is refused too
    csrf = csrf_of(client)
    other = client.post("/console/logout", data={"csrf": csrf}, headers={"Origin": "https://evil.example"})
    assert other.status_code == 403
    assert client.get("/console").status_code == 200, "the refused sign-out did not sign out"


def test_a_stale_form_or_a_refusal_shows_its_message_in_the_flash_area_for_htmx(
    client: TestClient, auth: dict[str, str]
) -> None:
    """Signed out and in again in another tab, the first tab's buttons carry the old session's token. htmx 2 swaps
    no 4xx answer, so a refusal answered 403 left the page unchanged: the button seemed to do nothing. For htmx the
    refusal is a message swapped into #flash (answered 200, nothing done; X-Desk-Denied says why)."""
    record_api(client, auth, "cust-tabs", [("offers", "email", "grant")])
    set_contact(client, "cust-tabs", email="tabs@example.org", locale="en")
    agent = new_staff(client, "agent")
    stale = sign_in(client, email=agent.email)
    fresh = sign_in(client, email=agent.email)  # the other tab: a new session, a new token
    assert stale != fresh
    htmx = {"HX-Request": "true"}
    for path in ("/console/customers/cust-tabs/link", "/console/customers/cust-tabs/record"):
        answer = post(client, stale, path, {"reference": "CALL-1"}, headers=htmx)
        assert answer.status_code == 200 and answer.headers["x-desk-denied"] == "csrf", path
        assert answer.headers["hx-retarget"] == "#flash" and answer.headers["hx-reswap"] == "innerHTML"
        assert "The form expired or came from another site. Reload the page and try again." in answer.text
    assert count(client, AccessLog, action="staff_send_link") == 0, "nothing was done"
    # without htmx the refusal stays a 403 page
    assert post(client, stale, "/console/customers/cust-tabs/link").status_code == 403
    # a role without the permission, from an htmx button: the message too
    sign_in(client, "auditor")
    denied = client.post("/console/customers/cust-tabs/link", headers={**htmx, "X-CSRF-Token": csrf_of(client)})
    assert denied.status_code == 200 and denied.headers["x-desk-denied"] == "role"
    assert denied.headers["hx-retarget"] == "#flash" and "Your role does not allow this." in denied.text


def test_search_by_ref_email_and_phone(client: TestClient, auth: dict[str, str]) -> None:
    record_api(client, auth, "cust-ada", [("offers", "email", "grant")])
    set_contact(client, "cust-ada", email="ada@example.org", phone="+33612345678")
    sign_in(client, "agent")
    for query in ("cust-a", "ada@exa", "06 12 34 56 78", "+33612345678"):
        answer = client.get("/console/search", params={"q": query}, headers={"HX-Request": "true"})
        assert answer.status_code == 200 and "/console/customers/cust-ada" in answer.text, query
        assert "<html" not in answer.text, "htmx gets a fragment"
    assert "No customer found" in client.get("/console/search", params={"q": "zzz-nobody"}).text

    async def search_log() -> list[dict[str, Any]]:
        return list(await AccessLog.filter(action="staff_search").values("detail"))

    details = run(client, search_log)
    assert {d["detail"]["query_kind"] for d in details} == {"ref", "email", "phone"}
    assert "ada@" not in str(details), "the access log never holds the query itself"


def test_agent_records_a_phone_consent_and_the_check_api_answers_granted(
    client: TestClient, auth: dict[str, str]
) -> None:
    record_api(client, auth, "cust-phone", [("newsletter", "email", "grant")])
    csrf = sign_in(client, "agent")
    page = client.get("/console/customers/cust-phone")
    assert page.status_code == 200
    assert "Record a decision on the customer" in page.text and "Script to read to the customer" in page.text
    form = _record_form(client, "cust-phone", reference="CALL-2026-0042")
    answer = post(client, csrf, "/console/customers/cust-phone/record", form, headers={"HX-Request": "true"})
    assert answer.status_code == 200, answer.text
    assert 'id="customer-live"' in answer.text and 'hx-swap-oob="true"' in answer.text
    assert "Recorded: offers/phone grant → granted" in answer.text

    result = check(client, auth, "cust-phone", "offers", "phone")
    assert result["allowed"] is True and result["reason"] == "granted"

    async def event() -> tuple[Any, Any]:
        row = await ConsentEvent.get(id=result["event_id"])
        return row, await UISnapshot.get(sha256=row.ui_snapshot_sha256)

    row, snapshot = run(client, event)
    assert row.touchpoint == "agent" and row.actor_type == "agent" and row.method == "phone_call"
    assert row.evidence["reference"] == "CALL-2026-0042"
    assert snapshot.kind == "agent_script" and snapshot.sha256 == form["script_sha256"]
    assert "Do you agree to receive Demo Shop offers by phone?" in snapshot.content
    assert "/policies/privacy-policy/1/en" in snapshot.content

    # the timeline shows the event, its policy version (linked) and what was read (linked)
    timeline = client.get("/console/customers/cust-phone").text
    assert 'href="/policies/privacy-policy/1/en"' in timeline
    snapshot_link = f"/console/customers/cust-phone/snapshots/{snapshot.sha256}"
    assert snapshot_link in timeline
    shown = client.get(snapshot_link)
    assert shown.status_code == 200 and "Do you agree to receive" in shown.text


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    """Mails (double opt-in confirmations) go to a per-test outbox."""
    return settings.with_overrides(mail_dir=tmp_path / "mail")


def test_a_phone_consent_to_a_double_opt_in_purpose_mails_the_confirmation_and_waits_for_it(
    client: TestClient, auth: dict[str, str]
) -> None:
    record_api(client, auth, "cust-doi", [("offers", "phone", "grant")])
    set_contact(client, "cust-doi", email="grace@example.org", locale="en")
    record_api(client, auth, "cust-no-mail", [("offers", "phone", "grant")])
    csrf = sign_in(client, "agent")
    form = _record_form(client, "cust-doi", target="newsletter:email")
    answer = post(client, csrf, "/console/customers/cust-doi/record", form, headers={"HX-Request": "true"})
    assert "Recorded: newsletter/email grant → pending_confirmation" in answer.text
    assert "The confirmation email went to the address on file" in answer.text
    (mail,) = [message_from_bytes(p.read_bytes()) for p in services_of(client).settings.mail_dir.glob("*.eml")]
    assert (mail["To"], mail["Subject"]) == ("grace@example.org", "Please confirm: Newsletter")
    assert check(client, auth, "cust-doi", "newsletter", "email")["reason"] == "pending_confirmation"

    # No address on file: said so (and, without JavaScript, on the page the agent is sent back to).
    form = _record_form(client, "cust-no-mail", target="newsletter:email")
    answer = post(client, csrf, "/console/customers/cust-no-mail/record", form)
    assert answer.status_code == 303 and answer.headers["location"].endswith("?done=recorded_no_email")
    page = client.get(answer.headers["location"]).text
    assert "There is no email address on file, so no confirmation email left" in page
    assert len(list(services_of(client).settings.mail_dir.glob("*.eml"))) == 1


def test_a_changed_script_is_not_recorded(client: TestClient) -> None:
    csrf = sign_in(client, "agent")
    form = _record_form(client, "cust-new")
    form["action"] = "deny"  # the agent read the grant script, then changed the decision without reading again
    answer = post(client, csrf, "/console/customers/cust-new/record", form, headers={"HX-Request": "true"})
    assert "the script changed" in answer.text and answer.headers.get("hx-retarget") == "#flash"
    form["reference"] = ""
    missing = post(client, csrf, "/console/customers/cust-new/record", form)
    assert missing.status_code == 422 and "reference" in missing.text


def test_recording_without_javascript_redirects_back_to_the_customer(client: TestClient, auth: dict[str, str]) -> None:
    csrf = sign_in(client, "supervisor")
    form = _record_form(client, "cust-nojs", target="offers:sms")
    answer = post(client, csrf, "/console/customers/cust-nojs/record", form)
    assert answer.status_code == 303 and answer.headers["location"] == "/console/customers/cust-nojs?done=recorded"
    assert check(client, auth, "cust-nojs", "offers", "sms")["allowed"] is True


def test_auditor_reads_but_never_records(client: TestClient, auth: dict[str, str]) -> None:
    record_api(client, auth, "cust-audit", [("offers", "email", "grant")])
    csrf = sign_in(client, "auditor")
    page = client.get("/console/customers/cust-audit")
    assert page.status_code == 200 and "Record a decision" not in page.text
    refused = post(client, csrf, "/console/customers/cust-audit/record", {"target": "offers:email"})
    assert refused.status_code == 403
    assert client.get("/console/audit").status_code == 200


def test_every_staff_view_and_change_is_in_the_access_log(client: TestClient, auth: dict[str, str]) -> None:
    record_api(client, auth, "cust-log", [("offers", "email", "grant")])
    agent = new_staff(client, "agent")
    csrf = sign_in(client, email=agent.email)
    client.get("/console/customers/cust-log")
    post(client, csrf, "/console/customers/cust-log/record", _record_form(client, "cust-log"))

    async def log() -> list[dict[str, Any]]:
        return list(await AccessLog.filter(actor_type="staff").order_by("id").values("actor_id", "action", "detail"))

    entries = run(client, log)
    actions = [e["action"] for e in entries if e["actor_id"] == str(agent.id)]
    assert actions[0] == "staff_sign_in"
    assert "staff_view" in actions and "staff_record" in actions
    # the auditor sees them
    sign_in(client, "auditor")
    audit = client.get("/console/audit", params={"ref": "cust-log"})
    assert "staff_record" in audit.text and "staff_view" in audit.text and f"{agent.name} (agent)" in audit.text


def test_approved_answers_are_searchable(client: TestClient) -> None:
    sign_in(client, "agent")
    page = client.get("/console/answers", params={"q": "unsubscribe"})
    assert page.status_code == 200
    assert "How do I unsubscribe?" in page.text and 'lang="en"' in page.text
    french = client.get("/console/answers", params={"q": "désinscrire", "lang": "fr"})
    assert "Comment me désinscrire ?" in french.text and "How do I unsubscribe?" not in french.text
    one = client.get("/console/answers/complaint", params={"lang": "en"})
    assert "dpo@demo-shop.example" in one.text, "placeholders are filled in"
    assert client.get("/console/answers/nope").status_code == 404


def test_admin_changes_a_role_which_ends_that_persons_session(client: TestClient) -> None:
    agent = new_staff(client, "agent")
    sign_in(client, email=agent.email)
    agent_cookie = client.cookies.get("desk_session")
    admin_csrf = sign_in(client, "admin")
    answer = post(client, admin_csrf, f"/console/staff/{agent.id}", {"role": "auditor"})
    assert answer.status_code == 303
    created = post(client, admin_csrf, "/console/staff", {"email": "new@staff.example", "name": "New", "role": "agent"})
    assert created.status_code == 200 and "Its password, shown once" in created.text
    client.cookies.clear()
    client.cookies.set("desk_session", agent_cookie or "", path="/console")
    assert client.get("/console", follow_redirects=False).status_code == 303


def test_admin_exports_the_whole_ledger_and_the_export_is_logged(client: TestClient, auth: dict[str, str]) -> None:
    record_api(client, auth, "cust-x1", [("offers", "email", "grant")])
    record_api(client, auth, "cust-x2", [("offers", "sms", "grant"), ("partners", "email", "deny")])
    sign_in(client, "agent")
    assert client.get("/console/ledger/export").status_code == 403, "an agent never exports the whole ledger"
    sign_in(client, "admin")
    answer = client.get("/console/ledger/export")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in answer.text.splitlines()]
    assert len(lines) == 4 and "checkpoint" in lines[-1]
    assert all(len(e["subject"]) == 64 and "@" not in json.dumps(e) for e in lines[:-1]), "pseudonymous"

    async def exports() -> int:
        return int(await AccessLog.filter(action="ledger_export", actor_type="staff").count())

    assert run(client, exports) == 1


def test_queue_views(client: TestClient, auth: dict[str, str]) -> None:
    record_api(client, auth, "cust-q", [("offers", "email", "grant")])
    csrf = sign_in(client, "agent")
    mine = post(client, csrf, "/console/customers/cust-q/requests", {"kind": "access", "assign_me": "1"})
    other = post(client, csrf, "/console/customers/cust-q/requests", {"kind": "portability"})
    mine_id, other_id = (r.headers["location"].rsplit("/", 1)[1] for r in (mine, other))
    home = client.get("/console").text
    assert f"/console/requests/{mine_id}" in home and f"/console/requests/{other_id}" not in home
    mine_view = client.get("/console/requests", params={"view": "mine"}).text
    assert f"/console/requests/{mine_id}" in mine_view and f"/console/requests/{other_id}" not in mine_view
    assert "No request." in client.get("/console/requests", params={"view": "closed"}).text
    assert post(client, csrf, f"/console/requests/{other_id}/take").status_code == 303
    page = client.get(f"/console/requests/{other_id}").text
    assert "Send the export link" in page and "Reassign" not in page, "agents do not reassign"


def test_path_and_filter_values_too_long_for_their_column_are_answered_not_a_500(
    client: TestClient, auth: dict[str, str]
) -> None:
    """Values the ORM refuses to put in a query (longer than the column) were a 500: now a 404 or a clear 422."""
    record_api(client, auth, "cust-long", [("offers", "email", "grant")])
    sign_in(client, "supervisor")
    for sha in ("a" * 65, "A" * 64, "g" * 64):
        missing = client.get(f"/console/customers/cust-long/snapshots/{sha}")
        assert missing.status_code == 404 and "no snapshot with this hash" in missing.text, sha
    notice = "00000000-0000-0000-0000-000000000000"
    resend = post(client, csrf_of(client), f"/console/customers/{'r' * 256}/notices/{notice}/resend")
    assert resend.status_code == 422 and "ref" in resend.text  # refused as every console page refuses such a ref
    sign_in(client, "auditor")
    for name, limit in (("actor_type", 16), ("action", 32)):
        refused = client.get("/console/audit", params={name: "x" * (limit + 1)})
        assert refused.status_code == 422 and f"{name} is at most {limit} characters" in refused.text
        assert client.get("/console/audit", params={name: "x" * limit}).status_code == 200
