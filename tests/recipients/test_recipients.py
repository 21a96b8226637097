"""GDPR 19: recipients are told of withdrawals, objections, erasures, restrictions, liftings and rectifications.

Each recipient is a real HTTP server on loopback. The notices are checked the way a recipient would check them:
the JWT against the service's published JWKS, its claims against the ledger.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import re
import time
import zipfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from starlette.testclient import TestClient

from server.app import create_app
from server.cli import main
from server.dsr.export import subject_export, to_csv_zip
from server.errors import InvalidRequest
from server.models import DataSubjectRequest, RecipientNotice, Subject
from server.recipients import registry
from server.recipients.dispatcher import NOTICE_TYP, Dispatcher, retry_delay
from server.settings import Settings
from tests.helpers.api import bearer, record
from tests.helpers.app import run, services_of
from tests.helpers.clock import Clock
from tests.helpers.console import desk, fetch, open_via_console, post, set_contact, sign_in
from tests.helpers.receiver import Receiver
from tests.helpers.sql import dump_every_table


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    started = [Receiver(), Receiver()]
    yield started
    for receiver in started:
        receiver.close()


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    return settings.with_overrides(mail_dir=tmp_path / "mail")


def add_recipient(client: TestClient, name: str, url: str) -> int:
    now = services_of(client).clock()
    recipient = run(client, lambda: registry.add(name, url, now))
    return int(recipient.id)


def deliver(client: TestClient) -> int:
    return int(run(client, services_of(client).recipients.deliver_due))


def claims(client: TestClient, received: dict[str, Any]) -> dict[str, Any]:
    """The notice as a recipient reads it: the JWT checked against the JWKS the service publishes, its claims
    against the schema in /openapi.json."""
    assert received["headers"]["Content-Type"] == "application/jwt"
    keys = KeySet.import_key_set(client.get("/.well-known/jwks.json").json())
    token = jwt.decode(received["body"], keys, algorithms=["ES256"])
    assert token.header["typ"] == NOTICE_TYP
    assert token.claims["exp"] - token.claims["iat"] == 3600
    document = client.get("/openapi.json").json()
    assert "consentNotice" in document["webhooks"]
    jsonschema.validate(token.claims, document["components"]["schemas"]["ConsentNotice"])
    return dict(token.claims)


def notices(client: TestClient, **filters: Any) -> list[dict[str, Any]]:
    async def read() -> list[dict[str, Any]]:
        return list(await RecipientNotice.filter(**filters).order_by("changed_at", "id").values())

    return list(run(client, read))


def events_of(client: TestClient, auth: dict[str, str], ref: str) -> list[dict[str, Any]]:
    answer = client.get(f"/v1/subjects/{ref}/events", headers=auth)
    assert answer.status_code == 200, answer.text
    return list(answer.json()["events"])


def test_a_withdrawal_is_told_to_every_recipient_signed_and_acknowledged(
    client: TestClient, auth: dict[str, str], receivers: list[Receiver]
) -> None:
    for index, receiver in enumerate(receivers):
        add_recipient(client, f"esp-{index}", receiver.url)
    assert record(client, auth, "cust-w", [("offers", "email", "grant")]).status_code == 201
    assert deliver(client) == 0 and notices(client) == [], "a grant is not pushed"

    assert record(client, auth, "cust-w", [("offers", "email", "withdraw")]).status_code == 201
    assert deliver(client) == 2
    withdrawal = events_of(client, auth, "cust-w")[-1]
    for receiver in receivers:
        assert len(receiver.received) == 1
        told = claims(client, receiver.received[0])
        assert told["type"] == "withdrawal" and told["subject"] == "cust-w"
        assert (told["purpose"], told["channel"], told["event_id"]) == ("offers", "email", withdrawal["id"])
        assert told["iss"] == services_of(client).settings.issuer and told["aud"] == receiver.url
    kept = notices(client)
    assert {n["status"] for n in kept} == {"delivered"} and {n["attempts"] for n in kept} == {1}
    assert {n["answer_sha256"] for n in kept} == {hashlib.sha256(receivers[0].answer).hexdigest()}
    assert {n["answer_status"] for n in kept} == {200}
    assert {str(n["id"]) for n in kept} == {claims(client, r.received[0])["jti"] for r in receivers}
    assert deliver(client) == 0, "a delivered notice is not sent again"


def test_a_refused_decision_queues_nothing_and_a_disabled_recipient_gets_no_new_notice(
    client: TestClient, auth: dict[str, str], receivers: list[Receiver]
) -> None:
    add_recipient(client, "esp", receivers[0].url)
    add_recipient(client, "crm", receivers[1].url)
    refused = record(client, auth, "cust-r", [("offers", "email", "withdraw")])
    assert refused.status_code == 422, "nothing to withdraw"
    assert notices(client) == []

    record(client, auth, "cust-r", [("offers", "email", "grant"), ("offers", "sms", "grant")])
    record(client, auth, "cust-r", [("offers", "email", "withdraw")])
    now = services_of(client).clock()
    assert run(client, lambda: registry.disable("crm", now)) is True
    record(client, auth, "cust-r", [("offers", "sms", "object")])
    assert deliver(client) == 3, "the withdrawal to both, the objection only to the active one"
    assert len(receivers[0].received) == 2 and len(receivers[1].received) == 1
    told = [claims(client, r) for r in receivers[0].received]
    assert sorted(t["type"] for t in told) == ["objection", "withdrawal"]


def test_an_unanswered_notice_is_retried_with_backoff_then_failed_then_sent_again(
    client: TestClient, auth: dict[str, str], receivers: list[Receiver], clock: Clock
) -> None:
    receiver = receivers[0]
    receiver.status = 503
    add_recipient(client, "esp", receiver.url)
    record(client, auth, "cust-f", [("offers", "email", "grant")])
    clock.set(clock())
    record(client, auth, "cust-f", [("offers", "email", "withdraw")])
    assert deliver(client) == 1
    [notice] = notices(client)
    assert (notice["status"], notice["attempts"], notice["last_error"]) == ("pending", 1, "HTTP 503")
    assert notice["next_attempt_at"] - clock() == timedelta(seconds=30)
    assert deliver(client) == 0, "not before its next attempt"
    clock.advance(seconds=31)
    assert deliver(client) == 1
    notice = notices(client)[0]
    assert notice["attempts"] == 2 and notice["next_attempt_at"] - clock() == timedelta(seconds=31), "as long again"
    assert [retry_delay(timedelta(seconds=n)) for n in (0, 29, 61, 7200, 10**6)] == [
        timedelta(seconds=30),
        timedelta(seconds=30),
        timedelta(seconds=61),
        timedelta(hours=2),
        timedelta(hours=6),
    ]

    receiver.close()  # nobody listens any more: a refused connection is a failed attempt too
    clock.advance(hours=72)
    assert deliver(client) == 1
    [notice] = notices(client)
    assert notice["status"] == "failed" and notice["attempts"] == 3 and "ConnectError" in notice["last_error"]
    clock.advance(hours=7)
    assert deliver(client) == 0, "a failed notice waits for someone to send it again"

    add_recipient(client, "esp-new-endpoint", receivers[1].url)
    run(client, lambda: _move_recipient("esp", receivers[1].url))
    assert run(client, services_of(client).recipients.send_again, [notice["id"]]) == 1
    assert deliver(client) == 1
    assert notices(client)[0]["status"] == "delivered"
    assert claims(client, receivers[1].received[0])["type"] == "withdrawal"


async def _move_recipient(name: str, url: str) -> None:
    from server.models import Recipient

    await Recipient.filter(name=name).update(url=url)


def test_desk_changes_are_told_and_a_rectification_sends_the_values_of_the_moment(
    client: TestClient, auth: dict[str, str], receivers: list[Receiver], clock: Clock
) -> None:
    receiver = receivers[0]
    add_recipient(client, "esp", receiver.url)
    record(client, auth, "cust-d", [("offers", "email", "grant"), ("offers", "sms", "grant")])
    set_contact(client, "cust-d", email="ada@old.example", phone="+33612345678", locale="en")
    csrf = sign_in(client, "supervisor")

    rectification = open_via_console(client, csrf, "cust-d", "rectification")
    answer = post(client, csrf, f"/console/requests/{rectification}/fulfil", {"email": "ada@new.example"})
    assert answer.status_code == 303, answer.text
    assert deliver(client) == 1
    told = claims(client, receiver.received[-1])
    assert told["type"] == "rectification" and told["fields"] == {"email": "ada@new.example"}

    restriction = open_via_console(client, csrf, "cust-d", "restriction")
    assert post(client, csrf, f"/console/requests/{restriction}/fulfil").status_code == 303
    notice = post(
        client, csrf, f"/console/requests/{restriction}/restriction-notice", {"lift_on": "2030-01-01", "reason": "ok"}
    )
    assert notice.status_code == 303
    assert post(client, csrf, f"/console/requests/{restriction}/restriction-lift").status_code == 303
    assert post(client, csrf, f"/console/requests/{restriction}/restriction-lift").status_code == 422
    open_via_console(client, csrf, "cust-d", "objection")
    # A rectification still waiting when the erasure comes: it is sent with nothing left to send.
    receiver.status = 500
    second = open_via_console(client, csrf, "cust-d", "rectification")
    assert post(client, csrf, f"/console/requests/{second}/fulfil", {"phone": "+33698765432"}).status_code == 303
    deliver(client)
    receiver.status = 200
    erasure = open_via_console(client, csrf, "cust-d", "erasure")
    assert post(client, csrf, f"/console/requests/{erasure}/fulfil", {"confirm": "yes"}).status_code == 303
    clock.advance(minutes=5)  # the failed rectification's next attempt is due
    deliver(client)
    for request_id in (rectification, restriction, erasure):
        assert "1 recipient(s) to be told (GDPR 19)" in fetch(client, DataSubjectRequest, id=request_id).outcome

    kinds = [n["kind"] for n in notices(client)]
    objected = [e for e in events_of(client, auth, "cust-d") if e["action"] == "object"]
    assert len(objected) > 2
    assert kinds == [
        "rectification",
        "restriction",
        "restriction_lifted",
        *["objection"] * len(objected),
        "rectification",
        "erasure",
    ], "one per change; the objection once per pair it changed"
    assert sorted(str(n["event_id"]) for n in notices(client, kind="objection")) == sorted(e["id"] for e in objected)
    assert {n["status"] for n in notices(client)} == {"delivered"}
    every = [claims(client, r) for r in receiver.received]
    rectifications = [t["fields"] for t in every if t["type"] == "rectification"]
    assert rectifications == [
        {"email": "ada@new.example"},
        {"phone": None},  # erased before it was delivered: nothing left to send
    ]
    erased = next(t for t in every if t["type"] == "erasure")
    assert erased["subject"] == "cust-d" and "fields" not in erased
    assert "ada@new.example" not in json.dumps(erased)
    dump = run(client, dump_every_table).lower()
    for trace in ("ada@new.example", "ada@old.example", "98765432", "12345678"):
        assert trace not in dump, f"{trace} kept after the erasure, recipients' notices included"


def test_the_server_sends_a_notice_as_soon_as_the_change_is_committed(
    settings: Settings, clock: Clock, receivers: list[Receiver]
) -> None:
    """With a poll an hour apart, only the wake-up after the commit can deliver within seconds."""
    app = create_app(settings.with_overrides(recipient_poll_s=3600), clock=clock)
    with TestClient(app, raise_server_exceptions=False) as client:
        auth = bearer(client)
        add_recipient(client, "esp", receivers[0].url)
        record(client, auth, "cust-now", [("newsletter", "email", "grant"), ("offers", "sms", "grant")])
        record(client, auth, "cust-now", [("offers", "sms", "withdraw")])
        deadline = time.monotonic() + 10
        while not receivers[0].received and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(receivers[0].received) == 1
        assert claims(client, receivers[0].received[0])["type"] == "withdrawal"


def test_recipient_urls_must_be_https_and_names_unique(client: TestClient) -> None:
    now = services_of(client).clock()
    for url, message in (
        ("ftp://esp.example/x", "not an absolute http(s) URL"),
        ("https://user:pw@esp.example/x", "no credentials"),
        ("http://esp.example/x", "must use https"),
    ):
        with pytest.raises(InvalidRequest, match=re.escape(message)):
            run(client, lambda url=url: registry.add("esp", url, now))
    run(client, lambda: registry.add("esp", "https://esp.example/hooks", now))
    run(client, lambda: registry.add("local", "http://127.0.0.1:9/x", now))
    with pytest.raises(InvalidRequest, match="already exists"):
        run(client, lambda: registry.add("esp", "https://other.example/", now))


def test_the_command_line_adds_lists_disables_delivers_and_retries(
    cli_env: Settings,
    clock: Clock,
    receivers: list[Receiver],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = cli_env
    monkeypatch.setenv("ENVIRONMENT", "production")

    def listed() -> dict[str, Any]:
        assert main(["recipients", "list"]) == 0
        return dict(json.loads(capsys.readouterr().out))

    assert main(["recipients", "add", "ESP", "http://esp.example/x"]) == 2
    assert "must use https" in capsys.readouterr().err
    assert main(["recipients", "add", "ESP", receivers[0].url]) == 0, "loopback may be plain http"
    assert json.loads(capsys.readouterr().out)["name"] == "ESP"
    with TestClient(create_app(settings, clock=clock)) as client:
        auth = bearer(client)
        record(client, auth, "cust-cli", [("offers", "email", "grant")])
        record(client, auth, "cust-cli", [("offers", "email", "withdraw")])
    receivers[0].status = 502
    assert main(["recipients", "deliver"]) == 0
    assert capsys.readouterr().out.strip() == "1 notice(s) tried"
    assert {k: listed()[k] for k in ("name", "active", "pending", "failed")} == {
        "name": "ESP",
        "active": True,
        "pending": 1,
        "failed": 0,
    }

    async def fail_all() -> None:
        await RecipientNotice.all().update(status="failed")

    with TestClient(create_app(settings, clock=clock)) as client:
        run(client, fail_all)
    assert listed()["failed"] == 1
    receivers[0].status = 200
    assert main(["recipients", "retry"]) == 0 and "1 notice(s) queued again" in capsys.readouterr().out
    assert main(["recipients", "deliver"]) == 0 and "1 notice(s) tried" in capsys.readouterr().out
    assert len(receivers[0].received) == 2
    assert (listed()["pending"], listed()["failed"]) == (0, 0)
    assert main(["recipients", "disable", "ESP"]) == 0 and capsys.readouterr().out == "disabled ESP\n"
    assert main(["recipients", "disable", "ESP"]) == 1 and "no active recipient" in capsys.readouterr().err
    assert listed()["active"] is False


def test_agents_see_what_recipients_were_told_and_send_a_failed_notice_again(
    client: TestClient, auth: dict[str, str], receivers: list[Receiver], clock: Clock
) -> None:
    receiver = receivers[0]
    add_recipient(client, "Newsletter ESP", receiver.url)
    record(client, auth, "cust-v", [("offers", "email", "grant"), ("offers", "sms", "grant")])
    clock.set(clock())
    record(client, auth, "cust-v", [("offers", "email", "withdraw")])
    receiver.status = 503
    deliver(client)
    clock.advance(hours=73)
    deliver(client)
    [failed] = notices(client)
    assert failed["status"] == "failed"

    auditor = sign_in(client, "auditor")
    page = client.get("/console/customers/cust-v")
    assert "Recipients told (GDPR 19)" in page.text and "Newsletter ESP" in page.text
    assert "HTTP 503" in page.text and "Send again" not in page.text, "an auditor reads, never acts"
    refused = post(client, auditor, f"/console/customers/cust-v/notices/{failed['id']}/resend")
    assert refused.status_code == 403

    agent = sign_in(client, "agent")
    assert "Send again" in client.get("/console/customers/cust-v").text
    missing = post(client, agent, "/console/customers/cust-v/notices/00000000-0000-4000-8000-000000000000/resend")
    assert missing.status_code == 404
    receiver.status = 200
    again = post(client, agent, f"/console/customers/cust-v/notices/{failed['id']}/resend")
    assert again.status_code == 303, again.text
    assert notices(client)[0]["status"] == "pending"
    assert deliver(client) == 1
    page = client.get("/console/customers/cust-v")
    assert "delivered" in page.text and "(HTTP 200)" in page.text and "Send again" not in page.text
    resend = f"/console/customers/cust-v/notices/{failed['id']}/resend"
    twice = post(client, agent, resend, headers={"HX-Request": "true"})
    assert twice.status_code == 200 and "nothing to send again" in twice.text

    # The subject's proof bundle and their access export say the same.
    bundle = client.get("/v1/subjects/cust-v/proof", headers=auth)
    assert bundle.status_code == 200, bundle.text
    with zipfile.ZipFile(io.BytesIO(bundle.content)) as archive:
        told = json.loads(archive.read("recipients.json"))
        manifest = json.loads(archive.read("manifest.json"))
    assert "recipients.json" in manifest["files"]
    [entry] = told
    withdrawal = events_of(client, auth, "cust-v")[-1]
    assert entry["recipient"]["name"] == "Newsletter ESP" and entry["type"] == "withdrawal"
    assert entry["event_id"] == withdrawal["id"] and entry["status"] == "delivered"
    assert entry["acknowledgement"] == {
        "http_status": 200,
        "body_sha256": hashlib.sha256(receiver.answer).hexdigest(),
    }
    assert entry["attempts"] == 3

    async def export() -> dict[str, Any]:
        subject = await Subject.get(ref="cust-v")
        catalog = await services_of(client).catalog.get()
        return await subject_export(subject, catalog, desk(client).controller, clock())

    data = run(client, export)
    assert [r["name"] for r in data["recipients"]] == ["Newsletter ESP"]
    assert [(n["recipient"], n["type"], n["status"]) for n in data["recipient_notices"]] == [
        ("Newsletter ESP", "withdrawal", "delivered")
    ]
    with zipfile.ZipFile(io.BytesIO(to_csv_zip(data))) as archive:
        assert "Newsletter ESP" in archive.read("recipients.csv").decode("utf-8-sig")
        assert "withdrawal" in archive.read("recipient_notices.csv").decode("utf-8-sig")


def test_a_recipient_of_some_purposes_is_told_of_their_withdrawals_and_of_every_change_to_the_person(
    client: TestClient, auth: dict[str, str], receivers: list[Receiver]
) -> None:
    esp, crm = receivers
    now = services_of(client).clock()
    with pytest.raises(InvalidRequest, match="unknown purpose"):
        run(client, lambda: registry.add("esp", esp.url, now, purposes=["offers", "nonsense"]))
    run(client, lambda: registry.add("esp", esp.url, now, purposes=["offers", " "]))
    run(client, lambda: registry.add("crm", crm.url, now))
    record(client, auth, "cust-p", [("offers", "email", "grant"), ("newsletter", "email", "grant")])
    record(client, auth, "cust-p", [("newsletter", "email", "withdraw")])
    record(client, auth, "cust-p", [("offers", "email", "withdraw")])
    set_contact(client, "cust-p", email="p@example.org")
    csrf = sign_in(client, "supervisor")
    restriction = open_via_console(client, csrf, "cust-p", "restriction")
    assert post(client, csrf, f"/console/requests/{restriction}/fulfil").status_code == 303
    deliver(client)
    told_esp = [(t["type"], t.get("purpose")) for t in (claims(client, r) for r in esp.received)]
    told_crm = [(t["type"], t.get("purpose")) for t in (claims(client, r) for r in crm.received)]
    assert told_esp == [("withdrawal", "offers"), ("restriction", None)]
    assert told_crm == [("withdrawal", "newsletter"), ("withdrawal", "offers"), ("restriction", None)]


def test_a_recipient_that_is_down_is_tried_once_a_round_and_then_gets_its_notices_in_order(
    client: TestClient, auth: dict[str, str], receivers: list[Receiver], clock: Clock
) -> None:
    receiver = receivers[0]
    add_recipient(client, "esp", receiver.url)
    pairs = [("offers", "email"), ("offers", "sms"), ("newsletter", "email")]
    record(client, auth, "cust-o", [(p, c, "grant") for p, c in pairs])
    clock.set(clock())
    for purpose, channel in pairs:
        record(client, auth, "cust-o", [(purpose, channel, "withdraw")])
        clock.advance(seconds=1)
    receiver.status = 503
    assert deliver(client) == 3
    assert len(receiver.received) == 1, "the first failure ends this recipient's round"
    kept = notices(client)
    assert [n["attempts"] for n in kept] == [1, 0, 0]
    assert recipient_row(client, "esp")["unavailable_until"] == kept[0]["next_attempt_at"]
    record(client, auth, "cust-o", [("offers", "email", "grant")])
    record(client, auth, "cust-o", [("offers", "email", "withdraw")])
    assert deliver(client) == 0, "nothing goes to it before the retry, a new notice neither"
    receiver.status = 200
    clock.advance(seconds=31)
    assert deliver(client) == 4
    sent = [claims(client, r) for r in receiver.received[1:]]
    assert [(t["purpose"], t["channel"]) for t in sent] == [*pairs, ("offers", "email")], "oldest change first"
    assert [t["changed_at"] for t in sent] == sorted(t["changed_at"] for t in sent)
    assert {n["status"] for n in notices(client)} == {"delivered"}
    assert recipient_row(client, "esp")["unavailable_until"] is None


def test_a_backlog_behind_a_recipient_down_for_longer_than_the_retry_period_fails_at_once(
    client: TestClient, auth: dict[str, str], receivers: list[Receiver], clock: Clock
) -> None:
    receiver = receivers[0]
    add_recipient(client, "esp", receiver.url)
    clock.set(clock())
    for n in range(4):
        record(client, auth, f"cust-b{n}", [("offers", "email", "grant")])
        record(client, auth, f"cust-b{n}", [("offers", "email", "withdraw")])
    receiver.status = 502
    assert deliver(client) == 4 and len(receiver.received) == 1
    clock.advance(hours=73)
    deliver(client)
    assert len(receiver.received) == 2, "tried once more, not once per notice"
    kept = notices(client)
    assert {n["status"] for n in kept} == {"failed"}, "agents see every one of them failed, not just the first"
    assert sorted(n["last_error"] for n in kept) == ["HTTP 502", *["recipient unavailable: HTTP 502"] * 3]


def recipient_row(client: TestClient, name: str) -> dict[str, Any]:
    from server.models import Recipient

    async def read() -> dict[str, Any]:
        return dict((await Recipient.filter(name=name).values())[0])

    return dict(run(client, read))


def test_two_dispatchers_running_at_once_send_each_notice_once(
    client: TestClient, auth: dict[str, str], receivers: list[Receiver]
) -> None:
    """Several server processes each run a dispatcher: the lease on a notice lets one of them send it."""
    for index, receiver in enumerate(receivers):
        add_recipient(client, f"r{index}", receiver.url)
    for n in range(5):
        record(client, auth, f"cust-c{n}", [("offers", "email", "grant")])
        record(client, auth, f"cust-c{n}", [("offers", "email", "withdraw")])
    dispatcher = services_of(client).recipients

    async def both() -> list[int]:
        return list(await asyncio.gather(dispatcher.deliver_due(), dispatcher.deliver_due()))

    run(client, both)
    assert [len(r.received) for r in receivers] == [5, 5]
    assert {(n["status"], n["attempts"]) for n in notices(client)} == {("delivered", 1)}
    assert len({claims(client, r)["jti"] for receiver in receivers for r in receiver.received}) == 10


def test_a_notice_a_recipient_refuses_does_not_hold_back_the_others_and_a_bad_url_fails_alone(
    client: TestClient, auth: dict[str, str], receivers: list[Receiver], clock: Clock
) -> None:
    esp, crm = receivers
    with pytest.raises(InvalidRequest, match="not a valid URL"):
        add_recipient(client, "bad", "https://esp.example:abc/x")
    add_recipient(client, "esp", esp.url)
    broken = add_recipient(client, "crm", crm.url)

    async def break_url() -> None:  # a URL that got past registration (an older version, a manual edit)
        from server.models import Recipient

        await Recipient.filter(id=broken).update(url="http://127.0.0.1:99999/x")

    run(client, break_url)
    pairs = [("offers", "email"), ("offers", "sms"), ("newsletter", "email")]
    record(client, auth, "cust-4xx", [(p, c, "grant") for p, c in pairs])
    clock.set(clock())
    for purpose, channel in pairs:
        record(client, auth, "cust-4xx", [(purpose, channel, "withdraw")])
        clock.advance(seconds=1)
    esp.statuses = [404]  # "unknown ref": this notice only
    assert deliver(client) == 6
    by_recipient = {(n["recipient_id"], n["purpose_id"], n["channel_id"]): n for n in notices(client)}
    assert [len(r.received) for r in receivers] == [3, 0], "the refusal did not stop the round"
    esp_notices = [n for key, n in by_recipient.items() if key[0] != broken]
    assert sorted((n["status"], n["last_error"]) for n in esp_notices) == [
        ("delivered", None),
        ("delivered", None),
        ("pending", "HTTP 404"),
    ]
    crm_notices = [n for key, n in by_recipient.items() if key[0] == broken]
    assert [n["attempts"] for n in crm_notices] == [1, 0, 0], "unreachable: tried once, the others wait"
    assert "port must be 0-65535" in crm_notices[0]["last_error"], "the error itself, not its exception group"


def test_an_answer_is_read_up_to_64_kib_and_a_slow_one_times_out(
    client: TestClient, auth: dict[str, str], receivers: list[Receiver], settings: Settings, clock: Clock
) -> None:
    esp, slow = receivers
    esp.answer = b"x" * (1 << 20)
    slow.delay = 1.5
    add_recipient(client, "esp", esp.url)
    add_recipient(client, "slow", slow.url)
    record(client, auth, "cust-big", [("offers", "email", "grant")])
    record(client, auth, "cust-big", [("offers", "email", "withdraw")])
    services = services_of(client)
    hurried = Dispatcher(services.keys, settings.issuer, clock, timeout_s=0.5)
    started = time.monotonic()
    assert run(client, hurried.deliver_due) == 2
    assert time.monotonic() - started < 1.4, "the slow recipient's attempt was cut at its time limit"
    kept = {n["recipient_id"]: n for n in notices(client)}
    delivered = [n for n in kept.values() if n["status"] == "delivered"]
    assert [n["answer_sha256"] for n in delivered] == [hashlib.sha256(b"x" * 65536).hexdigest()]
    [late] = [n for n in kept.values() if n["status"] == "pending"]
    assert late["last_error"] == "no answer within 0.5 s"


def test_an_outcome_is_written_only_under_the_lease_it_was_sent_with(
    client: TestClient, auth: dict[str, str], settings: Settings, clock: Clock
) -> None:
    """A send that outlives its lease: another process took the notice meanwhile, and its outcome stands."""
    add_recipient(client, "esp", "https://esp.example/notices")
    record(client, auth, "cust-lease", [("offers", "email", "grant")])
    record(client, auth, "cust-lease", [("offers", "email", "withdraw")])

    async def answer(request: httpx.Request) -> httpx.Response:
        # While this attempt is under way, its lease runs out and another dispatcher delivers the notice.
        await RecipientNotice.all().update(status="delivered", lease_token="other", attempts=1)
        return httpx.Response(503)

    services = services_of(client)
    dispatcher = Dispatcher(services.keys, settings.issuer, clock, transport=httpx.MockTransport(answer))
    assert run(client, dispatcher.deliver_due) == 1
    [notice] = notices(client)
    assert (notice["status"], notice["attempts"], notice["last_error"]) == ("delivered", 1, None)
