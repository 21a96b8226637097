"""Data-subject requests end to end through the console: access / portability export and its signed download,
rectification, erasure (a dump of every table holds no trace of the email; the ledger still verifies; the check
API answers `erased`), objection (every marketing purpose on every channel at once), restriction and its lifting,
extensions, refusals, reminders and overdue flags, requests opened from the preference center, and the staff
actions in the subject's proof bundle."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import re
import zipfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from server.dsr.deadlines import add_months, due_date
from server.dsr.export import ExportLinks
from server.dsr.reminders import send_reminders
from server.ledger.verify import verify_ledger
from server.models import AccessLog, ConsentEvent, DataSubjectRequest, DsrHistory, Receipt, Subject, Suppression
from server.settings import Settings
from server.subjects.contact import is_suppressed, normalise_email
from server.visibility import WRITE_WINDOW
from tests.helpers.app import run, services_of
from tests.helpers.busy import event_inserts_wait_for_a_held_lock, sqlite_write_lock_held
from tests.helpers.clock import Clock, StepClock
from tests.helpers.console import (
    check,
    count,
    csrf_of,
    desk,
    fetch,
    new_staff,
    open_via_console,
    post,
    record_api,
    set_contact,
    sign_in,
)
from tests.helpers.sql import dump_every_table

EMAIL = "Ada.Lovelace@Example.org"
PHONE = "+33612345678"


@pytest.fixture
def clock() -> StepClock:
    """A `Clock` that one test makes slow (`StepClock.step`)."""
    return StepClock()


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    """Mails go to a per-test outbox."""
    return settings.with_overrides(mail_dir=tmp_path / "mail")


def outbox(client: TestClient) -> list[Any]:
    directory = services_of(client).settings.mail_dir
    return [message_from_bytes(p.read_bytes()) for p in sorted(directory.glob("*.eml"))] if directory.is_dir() else []


def customer(client: TestClient, auth: dict[str, str], ref: str) -> None:
    record_api(
        client, auth, ref, [("offers", "email", "grant"), ("offers", "sms", "grant"), ("partners", "email", "grant")]
    )
    set_contact(client, ref, email=EMAIL, phone=PHONE, locale="en")


def get_request(client: TestClient, request_id: int) -> DataSubjectRequest:
    result: DataSubjectRequest = fetch(client, DataSubjectRequest, id=request_id)
    return result


async def _history(request_id: int) -> list[dict[str, Any]]:
    return list(await DsrHistory.filter(request_id=request_id).order_by("id").values("actor", "action", "note"))


def test_access_request_opened_fulfilled_and_downloaded(client: TestClient, auth: dict[str, str]) -> None:
    customer(client, auth, "cust-access")
    agent = new_staff(client, "agent")
    csrf = sign_in(client, email=agent.email)
    request_id = open_via_console(client, csrf, "cust-access", "access", details="wants everything")
    opened = get_request(client, request_id)
    assert opened.status == "open" and opened.owner_id == agent.id and opened.channel == "agent"
    assert opened.due_on == due_date(opened.received_at.astimezone(desk(client).zone).date())

    done = post(client, csrf, f"/console/requests/{request_id}/fulfil")
    assert done.status_code == 200, done.text
    urls = dict(re.findall(r'href="http://testserver(/dsr/export/[^"?]+\?format=(json|csv))"', done.text))
    links = {fmt: path for path, fmt in urls.items()}
    assert set(links) == {"json", "csv"}, done.text
    assert get_request(client, request_id).status == "done"

    # the link was mailed to the customer, without advertising, in their language
    mail = outbox(client)[-1]
    assert mail["To"] == EMAIL and "Your data is ready to download" in mail["Subject"]
    assert links["json"].replace("&amp;", "&") in mail.get_payload(decode=True).decode()

    client.cookies.clear()  # the customer has no staff session
    exported = client.get(links["json"])
    assert exported.status_code == 200 and "attachment" in exported.headers["content-disposition"]
    data = json.loads(exported.content)
    assert data["subject"]["email"] == EMAIL and data["subject"]["phone"] == PHONE
    events = client.get("/v1/subjects/cust-access/events", headers=auth).json()["events"]
    assert [e["hash"] for e in data["events"]] == [e["hash"] for e in events]
    assert len(data["receipts"]) == 1 and data["receipts"][0]["jws"].count(".") == 2
    assert data["requests"][0]["kind"] == "access" and data["requests"][0]["history"]
    assert {c["purpose"] for c in data["consents"]} == {"offers", "partners"}
    assert any(a["action"] == "dsr_export_download" for a in data["access_log"])

    zipped = client.get(links["csv"])
    assert zipped.status_code == 200 and zipped.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(zipped.content)) as archive:
        assert set(archive.namelist()) >= {"contact.csv", "events.csv", "receipts.csv", "requests.csv"}
        rows = list(csv.reader(io.StringIO(archive.read("events.csv").decode("utf-8-sig"))))
    assert rows[0][:3] == ["id", "seq", "recorded_at"] and len(rows) == 1 + len(events)

    assert client.get(links["json"].replace("/dsr/export/", "/dsr/export/x")).status_code == 404
    expired = ExportLinks(services_of(client).settings.secret_key, lifetime_s=-1)
    desk(client).export_links, kept = expired, desk(client).export_links
    try:
        assert client.get(links["json"]).status_code == 410
    finally:
        desk(client).export_links = kept

    async def log() -> list[str]:
        rows = await AccessLog.filter(subject__ref="cust-access").order_by("id").values("action")
        return [str(row["action"]) for row in rows]

    actions = run(client, log)
    assert {"dsr_open", "dsr_fulfil", "dsr_export_download"} <= set(actions)


def test_agents_handle_only_their_own_requests_and_never_erasure(client: TestClient, auth: dict[str, str]) -> None:
    customer(client, auth, "cust-agent")
    owner = new_staff(client, "agent")
    csrf = sign_in(client, email=owner.email)
    mine = open_via_console(client, csrf, "cust-agent", "access")
    erasure = open_via_console(client, csrf, "cust-agent", "erasure")
    assert get_request(client, erasure).owner_id is None, "an agent cannot own an erasure request"
    refused = post(client, csrf, f"/console/requests/{erasure}/fulfil", {"confirm": "yes"})
    assert refused.status_code == 403 and refused.headers["x-desk-denied"] == "object"
    assert post(client, csrf, f"/console/requests/{erasure}/take").status_code == 403
    other = sign_in(client, "agent")
    assert post(client, other, f"/console/requests/{mine}/fulfil").status_code == 403
    assert post(client, other, f"/console/requests/{mine}/status", {"status": "in_progress"}).status_code == 403
    assert fetch(client, Subject, ref="cust-agent").email == EMAIL


def test_rectification_corrects_contact_data_and_logs_the_fields_not_the_values(
    client: TestClient, auth: dict[str, str]
) -> None:
    customer(client, auth, "cust-rect")
    csrf = sign_in(client, "agent")
    request_id = open_via_console(client, csrf, "cust-rect", "rectification")
    bad = post(client, csrf, f"/console/requests/{request_id}/fulfil", {"email": "not an email"})
    assert bad.status_code == 422 and "not a valid email" in bad.text
    nothing = post(client, csrf, f"/console/requests/{request_id}/fulfil", {"email": " ", "phone": ""})
    assert nothing.status_code == 422 and "nothing to correct" in nothing.text
    answer = post(
        client, csrf, f"/console/requests/{request_id}/fulfil", {"email": "ada@new.example", "phone": "06 98 76 54 32"}
    )
    assert answer.status_code == 303, answer.text
    subject = fetch(client, Subject, ref="cust-rect")
    assert subject.email == "ada@new.example" and subject.phone == "+33698765432"
    history = run(client, _history, request_id)
    assert any(h["action"] == "rectified" and h["note"] == "corrected: email, phone" for h in history)
    assert "ada@new.example" not in str(history) and "98765432" not in str(history)
    assert get_request(client, request_id).status == "done"


def test_erasure_removes_every_trace_of_the_email_and_keeps_the_ledger(
    client: TestClient, auth: dict[str, str]
) -> None:
    customer(client, auth, "cust-erase")
    agent_csrf = sign_in(client, "agent")
    details = f"Please erase everything, my address is {EMAIL.upper()} and my phone {PHONE}"
    request_id = open_via_console(client, agent_csrf, "cust-erase", "erasure", details=details)
    client.get("/console/customers/cust-erase")  # a staff view, logged
    supervisor = new_staff(client, "supervisor")
    csrf = sign_in(client, email=supervisor.email)
    unconfirmed = post(client, csrf, f"/console/requests/{request_id}/fulfil")
    assert unconfirmed.status_code == 422
    events_before = count(client, ConsentEvent, subject__ref="cust-erase")
    answer = post(client, csrf, f"/console/requests/{request_id}/fulfil", {"confirm": "yes"})
    assert answer.status_code == 303, answer.text

    # the check API answers `erased` from that moment, for every purpose and channel
    for purpose, channel in (("offers", "email"), ("offers", "sms"), ("newsletter", "email")):
        assert check(client, auth, "cust-erase", purpose, channel)["reason"] == "erased"
    # the ledger is kept (GDPR 17(3)(e)) and still verifies
    assert count(client, ConsentEvent, subject__ref="cust-erase") == events_before
    report = run(client, verify_ledger)
    assert report.ok, report.breaks
    # no trace of the email or the phone in any table
    dump = run(client, dump_every_table)
    for trace in (EMAIL, EMAIL.lower(), "lovelace@example", PHONE, "612345678"):
        assert trace.lower() not in dump.lower(), trace
    assert "[erased]" in dump, "the request's details were scrubbed, not dropped"
    # a keyed hash stays, so the person is never imported or contacted again
    secret = services_of(client).settings.secret_key
    assert count(client, Suppression) == 2
    assert run(client, lambda: is_suppressed(secret, email=normalise_email(EMAIL)))
    # the confirmation was mailed before the address was erased
    assert any(m["To"] == EMAIL and "erased" in m["Subject"] for m in outbox(client))

    # setting the erased address on another customer through the desk is refused
    customer(client, auth, "cust-other")
    set_contact(client, "cust-other", email="someone@else.example")
    rect = open_via_console(client, csrf, "cust-other", "rectification")
    refused = post(client, csrf, f"/console/requests/{rect}/fulfil", {"email": " ADA.lovelace@example.org "})
    assert refused.status_code == 422 and "suppression list" in refused.text
    # nothing more can be done for an erased customer
    page = client.get("/console/customers/cust-erase")
    assert "erased" in page.text and "Record a decision" not in page.text


def test_objection_objects_to_every_marketing_purpose_on_every_channel_at_once(
    client: TestClient, auth: dict[str, str]
) -> None:
    customer(client, auth, "cust-object")
    record_api(client, auth, "cust-object", [("offers", "post", "object"), ("analytics", "web", "grant")])
    csrf = sign_in(client, "agent")
    request_id = open_via_console(client, csrf, "cust-object", "objection")
    assert get_request(client, request_id).status == "done", "GDPR 21(3): it takes effect at once"
    catalog = run(client, services_of(client).catalog.get)
    marketing = [(p, c) for p, info in catalog.purposes.items() if info.marketing for c in info.channels]
    for purpose, channel in marketing:
        answer = check(client, auth, "cust-object", purpose, channel)
        assert answer["reason"] == "objected", (purpose, channel, answer)
    assert check(client, auth, "cust-object", "analytics", "web")["allowed"] is True, "not direct marketing"

    async def receipts() -> list[Any]:
        return list(await Receipt.filter(subject__ref="cust-object").order_by("created_at"))

    last = run(client, receipts)[-1]
    assert len(last.event_ids) == len(marketing) - 1, "one record call, the already objected pair skipped"
    events = client.get("/v1/subjects/cust-object/events", headers=auth).json()["events"]
    objection = [e for e in events if e["action"] == "object" and e["touchpoint"] == "agent"]
    assert len(objection) == len(marketing) - 1


def test_restriction_answers_restricted_until_lifted_after_the_customer_is_told(
    client: TestClient, auth: dict[str, str]
) -> None:
    customer(client, auth, "cust-restrict")
    csrf = sign_in(client, "supervisor")
    request_id = open_via_console(client, csrf, "cust-restrict", "restriction")
    assert post(client, csrf, f"/console/requests/{request_id}/fulfil").status_code == 303
    assert check(client, auth, "cust-restrict", "offers", "email")["reason"] == "restricted"
    early = post(client, csrf, f"/console/requests/{request_id}/restriction-lift")
    assert early.status_code == 422 and "must be told" in early.text
    today = desk(client).today().isoformat()
    told = post(
        client, csrf, f"/console/requests/{request_id}/restriction-notice", {"lift_on": today, "reason": "checked"}
    )
    assert told.status_code == 303
    assert any("restriction" in m["Subject"] and m["To"] == EMAIL for m in outbox(client))
    assert post(client, csrf, f"/console/requests/{request_id}/restriction-lift").status_code == 303
    assert check(client, auth, "cust-restrict", "offers", "email")["reason"] == "granted"
    actions = [h["action"] for h in run(client, _history, request_id)]
    assert actions.index("customer_informed") < actions.index("restriction_lifted")


def test_supervisor_extends_once_with_reasons_sent_to_the_customer(client: TestClient, auth: dict[str, str]) -> None:
    customer(client, auth, "cust-extend")
    agent_csrf = sign_in(client, "agent")
    request_id = open_via_console(client, agent_csrf, "cust-extend", "access")
    assert post(client, agent_csrf, f"/console/requests/{request_id}/extend", {"months": "2"}).status_code == 403
    csrf = sign_in(client, "supervisor")
    missing = post(client, csrf, f"/console/requests/{request_id}/extend", {"months": "2", "reason": " "})
    assert missing.status_code == 422
    answer = post(
        client, csrf, f"/console/requests/{request_id}/extend", {"months": "2", "reason": "archives on paper"}
    )
    assert answer.status_code == 303
    request = get_request(client, request_id)
    assert request.due_on == add_months(request.original_due_on, 2)
    assert request.extension_reason == "archives on paper"
    mail = outbox(client)[-1]
    body = mail.get_payload(decode=True).decode()
    assert mail["To"] == EMAIL and "archives on paper" in body and request.due_on.isoformat() in body
    again = post(client, csrf, f"/console/requests/{request_id}/extend", {"months": "1", "reason": "more"})
    assert again.status_code == 422 and "already extended" in again.text


def test_refusal_needs_reasons_which_are_mailed(client: TestClient, auth: dict[str, str]) -> None:
    customer(client, auth, "cust-refuse")
    csrf = sign_in(client, "agent")
    request_id = open_via_console(client, csrf, "cust-refuse", "access")
    assert post(client, csrf, f"/console/requests/{request_id}/status", {"status": "refused"}).status_code == 422
    assert post(client, csrf, f"/console/requests/{request_id}/status", {"status": "done"}).status_code == 422
    answer = post(
        client, csrf, f"/console/requests/{request_id}/status", {"status": "refused", "note": "identity not proven"}
    )
    assert answer.status_code == 303
    assert get_request(client, request_id).status == "refused"
    body = outbox(client)[-1].get_payload(decode=True).decode()
    assert "identity not proven" in body and "CNIL" in body


def test_overdue_requests_are_flagged_and_reminded_once_a_day(
    client: TestClient, auth: dict[str, str], clock: Clock
) -> None:
    customer(client, auth, "cust-late")
    agent = new_staff(client, "agent")
    csrf = sign_in(client, email=agent.email)
    today = desk(client).today()
    late = open_via_console(client, csrf, "cust-late", "access", received_on=(today - timedelta(days=40)).isoformat())
    soon = open_via_console(
        client, csrf, "cust-late", "portability", received_on=(today - timedelta(days=27)).isoformat()
    )
    fresh = open_via_console(client, csrf, "cust-late", "rectification")
    future = post(
        client, csrf, "/console/customers/cust-late/requests", {"kind": "access", "received_on": "2999-01-01"}
    )
    assert future.status_code == 422
    queue = client.get("/console/requests")
    rows = re.findall(r'<tr( class="desk-(overdue|soon)")?>\s*<td><a href="/console/requests/(\d+)"', queue.text)
    flags = {int(r[2]): r[1] for r in rows}
    assert flags[late] == "overdue" and flags[soon] == "soon" and flags[fresh] == ""
    assert [int(r[2]) for r in rows][:2] == [late, soon], "sorted by due date"
    assert "overdue by" in queue.text

    center = services_of(client)
    sent = run(
        client,
        send_reminders,
        desk(client).mailer,
        today,
        center.settings.dsr_reminder_days,
        "http://testserver",
        datetime.now(UTC),
    )
    assert {r.request_id for r in sent} == {late, soon}
    assert all(r.recipients == (agent.email,) for r in sent)
    reminder = outbox(client)[-1]
    assert reminder["To"] == agent.email and f"/console/requests/{late}" in reminder.get_payload(decode=True).decode()
    assert "cust-late" not in reminder.get_payload(decode=True).decode(), "reminders never name the customer"
    again = run(client, send_reminders, desk(client).mailer, today, 7, "http://testserver", datetime.now(UTC))
    assert again == [], "once a day"
    assert any(h["action"] == "reminder" for h in run(client, _history, late))


def test_two_reminder_runs_at_once_remind_each_request_once(client: TestClient, auth: dict[str, str]) -> None:
    """The server's reminder job and a cron's `staff reminders --send` at the same moment: each request is claimed
    by one of them, and mailed once."""
    customer(client, auth, "cust-twice")
    agent = new_staff(client, "agent")
    csrf = sign_in(client, email=agent.email)
    today = desk(client).today()
    late = [
        open_via_console(client, csrf, "cust-twice", kind, received_on=(today - timedelta(days=40)).isoformat())
        for kind in ("access", "portability", "rectification")
    ]
    mails_before = len(outbox(client))
    mailer = desk(client).mailer

    async def both() -> list[list[int]]:
        runs = await asyncio.gather(
            *(send_reminders(mailer, today, 7, "http://testserver", datetime.now(UTC)) for _ in range(2))
        )
        return [[r.request_id for r in run] for run in runs]

    first, second = run(client, both)
    assert sorted(first + second) == sorted(late), "each request reminded by exactly one run"
    mailed = outbox(client)[mails_before:]
    assert sum(body.get_payload(decode=True).decode().count("/console/requests/") for body in mailed) == 3
    reminders = [h for request in late for h in run(client, _history, request) if h["action"] == "reminder"]
    assert len(reminders) == 3


@pytest.mark.parametrize("backend", ["sqlite"])  # SQLite's one write lock; PostgreSQL waits for the row
def test_a_customer_request_met_by_a_busy_database_asks_to_send_it_again(
    client: TestClient, auth: dict[str, str], settings: Settings
) -> None:
    customer(client, auth, "cust-busy")
    token, _ = services_of(client).links.issue("cust-busy", "preferences")
    form = {"token": token, "kind": "access", "details": "all of it", "lang": "en"}
    with sqlite_write_lock_held(client, settings):
        page = client.post("/requests", data=form)
        as_json = client.post("/requests", data=form, headers={"Accept": "application/json"})
    assert page.status_code == 503 and "Please send it again in a moment." in page.text
    assert as_json.status_code == 503 and as_json.json()["error"] == "database_busy"
    assert page.headers["retry-after"] == as_json.headers["retry-after"] == "1"
    assert client.post("/requests", data=form).status_code == 201

    async def opened() -> int:
        return await DataSubjectRequest.filter(subject__ref="cust-busy").count()

    assert run(client, opened) == 1


def _busy_database(client: TestClient, settings: Settings, clock: StepClock) -> AbstractContextManager[None]:
    """The objection's insert into consent_events waits for a lock another connection holds, and gives up."""
    return event_inserts_wait_for_a_held_lock(client, settings)


@contextlib.contextmanager
def _slow_recording(client: TestClient, settings: Settings, clock: StepClock) -> Iterator[None]:
    """Each reading of the clock a window later: the ledger's transaction outlasts `WRITE_WINDOW`."""
    clock.step = WRITE_WINDOW + timedelta(seconds=1)
    try:
        yield
    finally:
        clock.step = None


@pytest.mark.parametrize("hold_up", [_busy_database, _slow_recording], ids=["database-busy", "write-window-exceeded"])
def test_an_objection_whose_second_step_meets_a_busy_database_stays_one_open_request(
    client: TestClient,
    auth: dict[str, str],
    settings: Settings,
    clock: StepClock,
    hold_up: Callable[[TestClient, Settings, StepClock], AbstractContextManager[None]],
) -> None:
    """The request is stored before the objection is recorded (two transactions). When the second meets a busy
    database or a write that took too long (nothing kept, "send it again"), the person is told it was received (not
    "send it again", which would open a second request), and the request waits in the queue for an agent to record
    the objection. The database stays so to the end: the agent's objection from the console meets it too. Nothing in
    the app is replaced: the database refuses the insert, or the app's clock runs past the window."""
    customer(client, auth, "cust-half")
    token, _ = services_of(client).links.issue("cust-half", "preferences")

    async def opened() -> list[dict[str, Any]]:
        return list(await DataSubjectRequest.filter(subject__ref="cust-half").values("kind", "status"))

    with hold_up(client, settings, clock):
        answer = client.post("/requests", data={"token": token, "kind": "objection", "lang": "en"})
        assert answer.status_code == 201 and "We will answer by" in answer.text
        assert run(client, opened) == [{"kind": "objection", "status": "open"}]
        assert check(client, auth, "cust-half", "offers", "sms")["reason"] != "objected"  # left to the agent
        # The same from the console: the agent lands on the one open request, theirs, to record the objection there.
        request_id = open_via_console(client, sign_in(client, "agent"), "cust-half", "objection")
        assert get_request(client, request_id).status == "open"
        assert len(run(client, opened)) == 2  # the customer's and the agent's, no third


def test_the_customer_opens_a_request_from_the_preference_center(client: TestClient, auth: dict[str, str]) -> None:
    customer(client, auth, "cust-self")
    links = services_of(client).links
    token, _ = links.issue("cust-self", "preferences")
    form = client.get("/requests", params={"token": token, "lang": "en"})
    assert form.status_code == 200 and "Make a request about your data" in form.text
    answer = client.post("/requests", data={"token": token, "kind": "access", "details": "all of it", "lang": "en"})
    assert answer.status_code == 201 and "We will answer by" in answer.text
    as_json = client.post(
        "/requests", data={"token": token, "kind": "erasure"}, headers={"Accept": "application/json"}
    ).json()
    assert as_json["kind"] == "erasure" and as_json["status"] == "open"
    objection = client.post("/requests", data={"token": token, "kind": "objection", "lang": "en"})
    assert objection.status_code == 201 and "no more marketing" in objection.text
    assert check(client, auth, "cust-self", "offers", "sms")["reason"] == "objected"
    events = client.get("/v1/subjects/cust-self/events", headers=auth).json()["events"]
    assert any(e["touchpoint"] == "preference_center" and e["action"] == "object" for e in events)

    async def opened() -> list[dict[str, Any]]:
        return list(await DataSubjectRequest.filter(subject__ref="cust-self").values("channel", "opened_by"))

    assert {(r["channel"], r["opened_by"]) for r in run(client, opened)} == {("preference_center", "subject")}
    # refused: no token, a token for another use, a forged token
    unsubscribe, _ = links.issue("cust-self", "unsubscribe", purpose="offers", channel="email")
    for bad in ("", unsubscribe, token[:-4] + "AAAA"):
        refused = client.post("/requests", data={"token": bad, "kind": "access"})
        assert refused.status_code == 403, bad
    assert client.get("/requests").status_code == 403
    unknown = client.post("/requests", data={"token": token, "kind": "everything", "lang": "en"})
    assert unknown.status_code == 422 and "Choose what you want." in unknown.text


def test_staff_actions_are_in_the_subjects_proof_bundle(client: TestClient, auth: dict[str, str]) -> None:
    customer(client, auth, "cust-proof")
    agent = new_staff(client, "agent")
    csrf = sign_in(client, email=agent.email)
    client.get("/console/customers/cust-proof")
    open_via_console(client, csrf, "cust-proof", "access")
    auditor = new_staff(client, "auditor")
    sign_in(client, email=auditor.email)
    bundle = client.get("/console/customers/cust-proof/proof")
    assert bundle.status_code == 200 and bundle.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(bundle.content)) as archive:
        log = json.loads(archive.read("access_log.json"))
    seen = {(e["actor"]["type"], e["actor"]["id"], e["action"]) for e in log}
    assert ("staff", str(agent.id), "staff_view") in seen
    assert ("staff", str(agent.id), "dsr_open") in seen
    assert ("staff", str(auditor.id), "proof_bundle") in seen


def test_agent_emails_a_preference_center_link(client: TestClient, auth: dict[str, str]) -> None:
    customer(client, auth, "cust-link")
    csrf = sign_in(client, "agent")
    answer = post(client, csrf, "/console/customers/cust-link/link", headers={"HX-Request": "true"})
    assert answer.status_code == 200 and "was emailed to the address on file" in answer.text
    mail = outbox(client)[-1]
    body = mail.get_payload(decode=True).decode()
    assert mail["To"] == EMAIL and "/preferences?token=" in body

    async def sent() -> int:
        return int(await AccessLog.filter(action="staff_send_link", subject__ref="cust-link").count())

    assert run(client, sent) == 1
    record_api(client, auth, "cust-nomail", [("offers", "email", "grant")])
    refused = post(client, csrf, "/console/customers/cust-nomail/link")
    assert refused.status_code == 422 and "no email address on file" in refused.text


def test_details_typed_in_a_browser_count_line_breaks_as_the_form_does(
    client: TestClient, auth: dict[str, str]
) -> None:
    """A textarea's `maxlength` counts a line break as one character but the browser sends it as CRLF: 400 lines of
    "line" (1,999 characters) are accepted by the form, so by the server, from the customer and from the console."""
    customer(client, auth, "cust-lines")
    typed = "\r\n".join(["line"] * 400)
    assert len(typed.replace("\r\n", "\n")) == 1999 < len(typed)
    token, _ = services_of(client).links.issue("cust-lines", "preferences")
    answer = client.post("/requests", data={"token": token, "kind": "access", "details": typed, "lang": "en"})
    assert answer.status_code == 201 and "We will answer by" in answer.text
    request_id = open_via_console(client, sign_in(client, "agent"), "cust-lines", "rectification", details=typed)
    assert get_request(client, request_id).details == "\n".join(["line"] * 400)

    # Too long even so: the form again, with the error in the person's language and what they wrote; JSON asked,
    # JSON answered.
    client.cookies.clear()
    long = "é" * 2001
    form = {"token": token, "kind": "erasure", "details": long, "lang": "fr"}
    refused = client.post("/requests", data=form)
    assert refused.status_code == 422 and refused.headers["content-type"].startswith("text/html")
    assert "Votre message dépasse 2 000 caractères." in refused.text and f">{long}</textarea>" in refused.text
    assert 'value="erasure" required checked' in refused.text
    as_json = client.post("/requests", data=form, headers={"Accept": "application/json"})
    assert as_json.status_code == 422 and as_json.json()["error"] == "invalid_request"
    assert "longer than 2000 characters" in as_json.json()["detail"]
    assert count(client, DataSubjectRequest, subject__ref="cust-lines") == 2


def test_a_request_sent_twice_is_opened_once(client: TestClient, auth: dict[str, str], clock: Clock) -> None:
    """A double click, or the confirmation page reloaded ("send the form again?"), sends the same request again: it
    is answered with the first request's page, not opened a second time. The same request ten minutes later is a
    new one; so is another kind or another text."""
    customer(client, auth, "cust-twice")
    clock.set(datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    token, _ = services_of(client).links.issue("cust-twice", "preferences")
    form = {"token": token, "kind": "access", "details": "all of it", "lang": "en"}
    first = client.post("/requests", data=form)
    assert first.status_code == 201
    number = re.search(r"request #(\d+)", first.text)
    assert number, first.text
    clock.advance(seconds=30)
    again = client.post("/requests", data=form)
    assert again.status_code == 200 and f"request #{number.group(1)} on 2026-12-01" in again.text
    as_json = client.post("/requests", data=form, headers={"Accept": "application/json"})
    assert as_json.status_code == 200 and as_json.json()["id"] == int(number.group(1))
    assert count(client, DataSubjectRequest, subject__ref="cust-twice") == 1

    objection = {"token": token, "kind": "objection", "lang": "en"}
    assert client.post("/requests", data=objection).status_code == 201
    repeated = client.post("/requests", data=objection)
    assert repeated.status_code == 200 and "no more marketing" in repeated.text
    assert client.post("/requests", data={**form, "details": "and the logs"}).status_code == 201
    assert count(client, DataSubjectRequest, subject__ref="cust-twice") == 3

    clock.advance(minutes=11)
    assert client.post("/requests", data=form).status_code == 201
    assert count(client, DataSubjectRequest, subject__ref="cust-twice") == 4


def test_a_received_date_more_than_a_year_back_is_refused(
    client: TestClient, auth: dict[str, str], clock: Clock
) -> None:
    """A mistyped year (0001, 1026 for 2026) put a request "overdue by 739919 days" at the top of the queue."""
    customer(client, auth, "cust-old")
    clock.set(datetime(2026, 12, 1, 10, 0, tzinfo=UTC))
    csrf = sign_in(client, "agent")
    for typo in ("0001-01-01", "1026-12-01", "2025-11-30"):
        refused = post(client, csrf, "/console/customers/cust-old/requests", {"kind": "access", "received_on": typo})
        assert refused.status_code == 422, typo
        assert "the received date cannot be more than a year ago (before 2025-12-01)" in refused.text
    assert count(client, DataSubjectRequest, subject__ref="cust-old") == 0
    assert 'min="2025-12-01" max="2026-12-01"' in client.get("/console/customers/cust-old").text
    request_id = open_via_console(client, csrf, "cust-old", "access", received_on="2025-12-01")
    assert get_request(client, request_id).due_on.isoformat() == "2026-01-01"
    assert "overdue by 334 days" in client.get("/console/requests").text


def test_mails_about_a_request_give_the_day_it_was_received_where_the_controller_is(
    client: TestClient, auth: dict[str, str], clock: Clock
) -> None:
    """Received 23:30 UTC on 30 November, 00:30 in Paris on 1 December: the day of receipt is 1 December, in the
    refusal mailed as on the customer's page and in the due date."""
    customer(client, auth, "cust-night")
    clock.set(datetime(2026, 11, 30, 23, 30, tzinfo=UTC))
    token, _ = services_of(client).links.issue("cust-night", "preferences")
    opened = client.post("/requests", data={"token": token, "kind": "access", "lang": "en"})
    assert opened.status_code == 201 and "on 2026-12-01" in opened.text and "by 2027-01-01" in opened.text
    number = re.search(r"request #(\d+)", opened.text)
    assert number, opened.text
    request_id = int(number.group(1))
    csrf = sign_in(client, "supervisor")
    refused = post(client, csrf, f"/console/requests/{request_id}/status", {"status": "refused", "note": "no ID"})
    assert refused.status_code == 303
    body = outbox(client)[-1].get_payload(decode=True).decode()
    assert "2026-12-01" in body and "2026-11-30" not in body
    # The queue says so too, and so does the objection's text, kept in the ledger as what was recorded
    objection = client.post("/requests", data={"token": token, "kind": "objection", "lang": "en"})
    assert objection.status_code == 201, objection.text
    queue = client.get("/console/requests", params={"view": "closed"}).text  # refused and done
    assert "<td>2026-12-01</td>" in queue and "<td>2026-11-30</td>" not in queue
    (event,) = [
        e for e in client.get("/v1/subjects/cust-night/events", headers=auth).json()["events"] if e["ui_snapshot"]
    ][-1:]
    snapshot = client.get(f"/console/customers/cust-night/snapshots/{event['ui_snapshot']}").text
    assert "received 2026-12-01" in snapshot, snapshot


def test_public_pages_speak_the_persons_language_and_say_what_is_wrong(
    client: TestClient, auth: dict[str, str]
) -> None:
    """The form's `lang`, else the subject's locale, else Accept-Language (French, the controller's, last); an
    unknown export format is named as such, not as an invalid link."""
    customer(client, auth, "cust-lang")  # locale "en"
    english = {"Accept-Language": "en-GB,en;q=0.8"}
    bad_link = client.get("/requests", params={"token": "x.y.z"}, headers=english)
    assert bad_link.status_code == 403 and "This link is not valid or has expired." in bad_link.text
    assert "Ce lien" in client.get("/requests", params={"token": "x.y.z"}).text
    token, _ = services_of(client).links.issue("cust-lang", "preferences")
    form = client.get("/requests", params={"token": token})
    assert '<html lang="en">' in form.text and "Make a request about your data" in form.text
    unknown = client.post("/requests", data={"token": token, "kind": "everything"})
    assert unknown.status_code == 422 and "Choose what you want." in unknown.text
    assert "Choisissez" in client.post("/requests", data={"token": token, "kind": "x", "lang": "fr"}).text

    expired = client.get("/dsr/export/not-a-link", headers=english)
    assert expired.status_code == 404 and "This download link is not valid or has expired." in expired.text
    request_id = open_via_console(client, sign_in(client, "agent"), "cust-lang", "access")
    done = post(client, csrf_of(client), f"/console/requests/{request_id}/fulfil")
    link = re.search(r'href="http://testserver(/dsr/export/[^"?]+)\?format=json"', done.text)
    assert link, done.text
    client.cookies.clear()
    wrong_format = client.get(link.group(1), params={"format": "xml"})
    assert wrong_format.status_code == 400 and "This download format is unknown" in wrong_format.text
    assert client.get(link.group(1), params={"format": "csv"}).status_code == 200


def test_an_erased_persons_link_opens_no_request_as_it_opens_no_preferences(
    client: TestClient, auth: dict[str, str]
) -> None:
    """After erasure the preference center answers 410 Gone to the person's still valid link: so does /requests,
    with the same explanation in their language and the controller's address to write to (their data no longer
    exists here; a new request goes in writing)."""
    customer(client, auth, "cust-gone")
    token, _ = services_of(client).links.issue("cust-gone", "preferences")
    request_id = open_via_console(client, sign_in(client, "supervisor"), "cust-gone", "erasure")
    erased = post(client, csrf_of(client), f"/console/requests/{request_id}/fulfil", {"confirm": "yes"})
    assert erased.status_code == 303, erased.text
    client.cookies.clear()
    assert client.get("/preferences", params={"token": token}).status_code == 410
    form = client.get("/requests", params={"token": token, "lang": "en"})
    assert form.status_code == 410 and "At your request, we erased your personal data." in form.text
    assert "dpo@" in form.text and "<form" not in form.text
    for kind in ("access", "objection"):
        page = client.post("/requests", data={"token": token, "kind": kind, "lang": "fr"})
        assert page.status_code == 410 and "nous avons effacé vos données personnelles" in page.text
        as_json = client.post("/requests", data={"token": token, "kind": kind}, headers={"Accept": "application/json"})
        assert as_json.status_code == 410 and as_json.json()["error"] == "subject_erased"
    assert count(client, DataSubjectRequest, subject__ref="cust-gone") == 1
