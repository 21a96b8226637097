"""Mail: double opt-in through a real SMTP server on loopback (aiosmtpd), the "send me a link" form, and RFC 8058
one-click unsubscribe; on both databases."""

from __future__ import annotations

import email
import email.policy
import hashlib
import itertools
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from starlette.testclient import TestClient
from tortoise.transactions import in_transaction

from preference_center.csrf import FORM_TOKEN_LIFETIME_S, form_token
from server.models import ConsentEvent, Subject, UISnapshot
from server.settings import Settings
from server.subjects.contact import normalise_email, suppress
from server.visibility import WRITE_WINDOW
from tests.helpers.api import record
from tests.helpers.app import run, services_of
from tests.helpers.busy import sqlite_write_lock_held
from tests.ports import free_port

REF = "cust-mail"
ADDRESS = "chloe@example.com"


class Sink:
    """An SMTP server's message handler that keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp() -> Iterator[tuple[Sink, int]]:
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield sink, controller.port
    finally:
        controller.stop()


@pytest.fixture
def settings(settings: Settings, smtp: tuple[Sink, int], tmp_path: Path) -> Settings:
    """The app sends through the SMTP sink on loopback (no STARTTLS there)."""
    return settings.with_overrides(
        smtp_host="127.0.0.1", smtp_port=smtp[1], smtp_starttls=False, mail_dir=tmp_path / "unused"
    )


@pytest.fixture
def sink(smtp: tuple[Sink, int]) -> Sink:
    return smtp[0]


def link_in(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    match = re.search(r"http://testserver(/\S+)", body.get_content())
    assert match, body.get_content()
    return match.group(1)


async def _events(ref: str) -> list[dict[str, Any]]:
    subject = await Subject.get(ref=ref)
    return (
        await ConsentEvent.filter(subject_id=subject.id)
        .order_by("seq")
        .values("action", "status", "method", "touchpoint", "evidence", "ui_snapshot_sha256")
    )


def events(client: TestClient, ref: str = REF) -> list[dict[str, Any]]:
    return list(run(client, _events, ref))


def check(client: TestClient, auth: dict[str, str], purpose: str, channel: str) -> str:
    answer = client.get(
        "/v1/consents/check", params={"subject": REF, "purpose": purpose, "channel": channel}, headers=auth
    )
    return str(answer.json()["reason"])


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match
    return match.group(1)


def test_double_opt_in_through_a_real_smtp_server(client: TestClient, auth: dict[str, str], sink: Sink) -> None:
    link = client.post(f"/v1/subjects/{REF}/preference-links", json={"email": ADDRESS, "locale": "en"}, headers=auth)
    token = link.json()["token"]
    page = client.get("/preferences", params={"token": token}).text
    answer = client.post(
        "/preferences/toggle",
        data={"token": token, "csrf": csrf_of(page), "set": "newsletter:email:on"},
        headers={"HX-Request": "true"},
    )
    assert "Almost done: we sent you an email to confirm Newsletter by email." in answer.text
    assert "Waiting for your confirmation" in answer.text
    assert check(client, auth, "newsletter", "email") == "pending_confirmation"

    (mail,) = sink.messages
    assert mail["To"] == ADDRESS
    assert mail["Subject"] == "Please confirm: Newsletter"
    assert mail["Message-ID"] and mail["Auto-Submitted"] == "auto-generated"
    text = mail.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert "Demo Shop SAS" in text and "offer" not in text.lower(), "no advertising in a confirmation mail"
    confirm_url = link_in(mail)
    assert confirm_url.startswith("/preferences/confirm?token=")

    # Opening the link (or a scanner prefetching it) writes nothing: it shows a button.
    shown = client.get(confirm_url)
    assert shown.status_code == 200 and 'id="pc-confirm"' in shown.text
    assert [e["action"] for e in events(client)] == ["grant"]

    done = client.post(
        "/preferences/confirm", data={"token": confirm_url.split("token=")[1], "csrf": csrf_of(shown.text)}
    )
    assert done.status_code == 200 and "Thank you, it is confirmed" in done.text
    _, confirm = events(client)
    assert (confirm["action"], confirm["status"], confirm["method"]) == ("confirm", "granted", "confirm_link")
    assert confirm["evidence"]["message_id"] == mail["Message-ID"].strip()
    # the stored copy of the mail: its exact text, the personal link replaced by a placeholder

    async def snapshot() -> tuple[str, str]:
        row = await UISnapshot.get(sha256=confirm["ui_snapshot_sha256"])
        return row.kind, row.content

    kind, content = run(client, snapshot)
    assert kind == "confirmation_mail"
    assert content.replace("<confirmation link>", f"http://testserver{confirm_url}") == text.replace("\r\n", "\n")
    assert confirm["ui_snapshot_sha256"] == hashlib.sha256(content.encode()).hexdigest()
    assert check(client, auth, "newsletter", "email") == "granted"

    # A replayed link: "already confirmed", and nothing written, by GET or by POST.
    again = client.get(confirm_url)
    assert again.status_code == 200 and "Already confirmed" in again.text
    replay = client.post(
        "/preferences/confirm", data={"token": confirm_url.split("token=")[1], "csrf": csrf_of(shown.text)}
    )
    assert "Already confirmed" in replay.text
    assert len(events(client)) == 2
    # Without its CSRF token, the confirmation form is refused.
    assert client.post("/preferences/confirm", data={"token": confirm_url.split("token=")[1]}).status_code == 403


def test_a_double_opt_in_grant_recorded_through_the_api_mails_the_confirmation_link(
    client: TestClient, auth: dict[str, str], sink: Sink
) -> None:
    """A signup form that records its grant through the API: the person gets the same confirmation mail as from the
    preference center, in their language, and the grant counts once they click."""
    client.post(f"/v1/subjects/{REF}/preference-links", json={"email": ADDRESS, "locale": "en"}, headers=auth)
    recorded = record(client, auth, REF, [("newsletter", "email", "grant"), ("offers", "sms", "grant")])
    assert recorded.status_code == 201, recorded.text
    pending = recorded.json()["events"][0]
    assert pending["status"] == "pending_confirmation"
    assert recorded.json()["confirmations"] == [
        {"event_id": pending["id"], "purpose": "newsletter", "channel": "email", "mail": "sent"}
    ]
    (mail,) = sink.messages  # none for the sms grant, which needs no confirmation
    assert (mail["To"], mail["Subject"]) == (ADDRESS, "Please confirm: Newsletter")
    assert check(client, auth, "newsletter", "email") == "pending_confirmation"

    confirm_url = link_in(mail)
    shown = client.get(confirm_url)
    done = client.post(
        "/preferences/confirm", data={"token": confirm_url.split("token=")[1], "csrf": csrf_of(shown.text)}
    )
    assert done.status_code == 200 and "Thank you, it is confirmed" in done.text
    assert check(client, auth, "newsletter", "email") == "granted"
    confirm = events(client)[-1]
    assert (confirm["action"], confirm["method"]) == ("confirm", "confirm_link")
    assert confirm["evidence"]["message_id"] == mail["Message-ID"].strip()


def test_an_api_grant_without_an_address_on_file_waits_and_says_why(
    client: TestClient, auth: dict[str, str], sink: Sink
) -> None:
    recorded = record(client, auth, "no-address", [("newsletter", "email", "grant")])
    assert recorded.status_code == 201, recorded.text
    assert [c["mail"] for c in recorded.json()["confirmations"]] == ["no_email"]
    assert sink.messages == []
    # Decisions that leave nothing pending report no confirmation at all.
    assert record(client, auth, "no-address", [("offers", "email", "grant")]).json()["confirmations"] == []


def test_api_confirmation_mails_go_once_per_grant_and_never_where_they_may_not(
    client: TestClient, auth: dict[str, str], sink: Sink
) -> None:
    """One mail for the grant that counts (a repeated pair in one request), none to a restricted subject or to an
    erased person's address, and no more than the preference center's resend limit for one person."""
    client.post(f"/v1/subjects/{REF}/preference-links", json={"email": ADDRESS}, headers=auth)
    twice = record(client, auth, REF, [("newsletter", "email", "grant"), ("newsletter", "email", "grant")])
    assert twice.status_code == 201, twice.text
    latest = twice.json()["events"][-1]["id"]
    assert [(c["event_id"], c["mail"]) for c in twice.json()["confirmations"]] == [(latest, "sent")]
    assert len(sink.messages) == 1
    assert client.get(link_in(sink.messages[0])).status_code == 200  # the link of the grant that counts

    for mail in ("sent", "sent", "sent", "sent", "rate_limited"):  # 5 mails to one person in 15 minutes
        grant = record(client, auth, REF, [("newsletter", "email", "grant")])
        assert [c["mail"] for c in grant.json()["confirmations"]] == [mail]
    assert len(sink.messages) == 5

    secret = services_of(client).settings.secret_key

    async def restrict_and_suppress() -> None:
        await Subject.filter(ref="restricted-one").update(restricted_at=datetime.now(UTC))
        async with in_transaction() as conn:
            await suppress(conn, secret, "email", "erased@example.com", datetime.now(UTC))

    for ref, address in (("restricted-one", "r@example.com"), ("reused-address", "Erased@Example.com")):
        client.post(f"/v1/subjects/{ref}/preference-links", json={"locale": "fr"}, headers=auth)
        run(client, set_address, ref, address)
    run(client, restrict_and_suppress)
    for ref, expected in (("restricted-one", "restricted"), ("reused-address", "suppressed")):
        grant = record(client, auth, ref, [("newsletter", "email", "grant")])
        assert grant.status_code == 201, grant.text
        assert [c["mail"] for c in grant.json()["confirmations"]] == [expected]
    assert len(sink.messages) == 5


def test_a_confirmation_mail_that_cannot_be_written_leaves_the_grant_recorded_and_pending(
    client: TestClient, auth: dict[str, str], tmp_path: Path
) -> None:
    """The mail goes after the commit: an outbox that cannot be written (here a file where its directory should be)
    is reported as `not_sent`, never as a 500 that would invite the caller to record the grant again."""
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    mailer = services_of(client).mailer
    mailer.settings = mailer.settings.with_overrides(smtp_host=None, mail_dir=blocked)
    client.post(f"/v1/subjects/{REF}/preference-links", json={"email": ADDRESS}, headers=auth)
    grant = record(client, auth, REF, [("newsletter", "email", "grant")])
    assert grant.status_code == 201, grant.text
    assert [c["mail"] for c in grant.json()["confirmations"]] == ["not_sent"]
    assert check(client, auth, "newsletter", "email") == "pending_confirmation"
    assert [e["action"] for e in events(client)] == ["grant"]

    # The preference center's own switch, on the same broken outbox: it says so, and the grant stays.
    token = client.post(f"/v1/subjects/{REF}/preference-links", json={"locale": "en"}, headers=auth).json()["token"]
    page = client.get("/preferences", params={"token": token}).text
    for value in ("off", "on"):
        answer = client.post(
            "/preferences/toggle",
            data={"token": token, "csrf": csrf_of(page), "set": f"newsletter:email:{value}"},
            headers={"HX-Request": "true"},
        )
        assert answer.status_code == 200, answer.text
    assert "the confirmation email could not be sent" in answer.text
    assert [e["action"] for e in events(client)] == ["grant", "withdraw", "grant"]


async def set_address(ref: str, address: str) -> None:
    """An address on file as an import would have left it (normalised), before it was suppressed."""
    await Subject.filter(ref=ref).update(email=normalise_email(address))


def test_a_confirmation_link_for_an_older_grant_confirms_nothing(
    client: TestClient, auth: dict[str, str], sink: Sink
) -> None:
    token = client.post(f"/v1/subjects/{REF}/preference-links", json={"email": ADDRESS}, headers=auth).json()["token"]
    csrf = csrf_of(client.get("/preferences", params={"token": token}).text)
    for value in ("on", "off", "on"):
        client.post("/preferences/toggle", data={"token": token, "csrf": csrf, "set": f"newsletter:email:{value}"})
    first, second = sink.messages
    stale = client.get(link_in(first))
    assert stale.status_code == 409 and 'id="pc-confirm"' not in stale.text
    assert client.get(link_in(second)).status_code == 200
    assert [e["action"] for e in events(client)] == ["grant", "withdraw", "grant"]


def test_without_an_address_no_confirmation_can_be_sent(client: TestClient, auth: dict[str, str], sink: Sink) -> None:
    token, _ = services_of(client).links.issue(REF, "preferences")
    csrf = csrf_of(client.get("/preferences", params={"token": token}).text)
    answer = client.post(
        "/preferences/toggle", data={"token": token, "csrf": csrf, "lang": "en", "set": "newsletter:email:on"}
    )
    assert "we have no email address for you" in answer.text
    assert sink.messages == []
    assert check(client, auth, "newsletter", "email") == "pending_confirmation"


def test_resend_sends_the_confirmation_again(client: TestClient, auth: dict[str, str], sink: Sink) -> None:
    token = client.post(f"/v1/subjects/{REF}/preference-links", json={"email": ADDRESS}, headers=auth).json()["token"]
    csrf = csrf_of(client.get("/preferences", params={"token": token}).text)
    client.post("/preferences/toggle", data={"token": token, "csrf": csrf, "set": "newsletter:email:on"})
    answer = client.post("/preferences/resend", data={"token": token, "csrf": csrf, "resend": "newsletter:email"})
    assert answer.status_code == 200
    first, second = sink.messages
    assert first["Message-ID"] != second["Message-ID"]
    assert len(events(client)) == 1, "resending records nothing"
    done = client.get(link_in(second))
    client.post("/preferences/confirm", data={"token": link_in(second).split("token=")[1], "csrf": csrf_of(done.text)})
    assert events(client)[-1]["evidence"]["message_id"] == second["Message-ID"].strip()


def test_send_the_email_again_counts_each_mail_once(client: TestClient, auth: dict[str, str], sink: Sink) -> None:
    """5 mails a person in 15 minutes (README): the switch's mail and four more "Send the email again"; the fifth
    resend is refused with its own message and sends nothing."""
    token = client.post(f"/v1/subjects/{REF}/preference-links", json={"email": ADDRESS}, headers=auth).json()["token"]
    csrf = csrf_of(client.get("/preferences", params={"token": token}).text)
    client.post("/preferences/toggle", data={"token": token, "csrf": csrf, "set": "newsletter:email:on"})
    resends = [
        client.post(
            "/preferences/resend",
            data={"token": token, "csrf": csrf, "lang": "en", "resend": "newsletter:email"},
            headers={"HX-Request": "true"},
        )
        for _ in range(5)
    ]
    assert [a.status_code for a in resends] == [200, 200, 200, 200, 429]
    assert len(sink.messages) == 5
    assert "Too many emails were sent already" in resends[-1].text
    assert "Too many emails" not in resends[-2].text


def test_send_me_a_link_answers_the_same_for_known_and_unknown_addresses(
    client: TestClient, auth: dict[str, str], sink: Sink
) -> None:
    client.post(f"/v1/subjects/{REF}/preference-links", json={"email": ADDRESS, "locale": "en"}, headers=auth)
    answers = []
    for address in ("Chloe@Example.com", "nobody@example.com"):
        form = client.get("/preferences/request-link", params={"lang": "en"})
        assert form.status_code == 200 and "set-cookie" not in form.headers, "no cookie: it works in the embed too"
        answer = client.post(
            "/preferences/request-link", data={"email": address, "csrf": csrf_of(form.text), "lang": "en"}
        )
        assert answer.status_code == 200
        answers.append(answer.text)
    assert answers[0] == answers[1]
    (mail,) = sink.messages
    assert mail["To"] == "Chloe@Example.com" and mail["Subject"] == "Your link to manage your preferences"
    opened = client.get(link_in(mail))
    assert opened.status_code == 200 and 'id="row-newsletter"' in opened.text

    client.cookies.clear()
    refused = client.post("/preferences/request-link", data={"email": ADDRESS, "csrf": "forged", "lang": "en"})
    assert refused.status_code == 400 and "please send the form again" in refused.text
    assert len(sink.messages) == 1


def test_send_me_a_link_refuses_a_form_token_it_did_not_give_to_this_client(
    client: TestClient, auth: dict[str, str], sink: Sink
) -> None:
    """No cookie (another site's iframe never sends ours): the form's token is signed, bound to the network it was
    shown to and to the hour; a post that the browser marks as coming from another site is refused too."""
    client.post(f"/v1/subjects/{REF}/preference-links", json={"email": ADDRESS}, headers=auth)
    client.cookies.clear()
    token = csrf_of(client.get("/preferences/request-link", params={"lang": "en"}).text)
    data = {"email": ADDRESS, "csrf": token, "lang": "en"}
    secret, now = services_of(client).settings.secret_key, services_of(client).links.now()
    forged = [
        form_token(secret, "198.51.100.0/24", now),  # what another site's server fetched for itself
        form_token(secret, "unknown", now - FORM_TOKEN_LIFETIME_S - 1),  # this client's network, too old
        token.rpartition(".")[0] + ".forged",
        "1.2.3.4",
        "².a.b",  # a digit to str.isdigit, not to int(): a 500 before
        "",
    ]
    refused = [client.post("/preferences/request-link", data={**data, "csrf": value}) for value in forged]
    refused.append(client.post("/preferences/request-link", data=data, headers={"Sec-Fetch-Site": "cross-site"}))
    for answer in refused:
        assert answer.status_code == 400 and "please send the form again" in answer.text
        assert 'name="csrf"' in answer.text, "with a fresh form to send again"
    assert sink.messages == []
    sent = client.post("/preferences/request-link", data=data, headers={"Sec-Fetch-Site": "same-origin"})
    assert sent.status_code == 200 and "Check your inbox" in sent.text
    (mail,) = sink.messages
    assert mail["To"] == ADDRESS


def test_send_me_a_link_keeps_the_typed_address_after_an_error(client: TestClient, sink: Sink) -> None:
    """The person corrects what they typed instead of typing it again; the value comes back escaped."""
    form = client.get("/preferences/request-link", params={"lang": "en"})
    typed = 'chloe"><script>alert(1)</script>@example'
    answer = client.post("/preferences/request-link", data={"email": typed, "csrf": csrf_of(form.text), "lang": "en"})
    assert answer.status_code == 400 and "Please enter an email address" in answer.text
    assert 'value="chloe&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;@example"' in answer.text
    assert "<script>alert(1)" not in answer.text
    assert sink.messages == []


def test_send_me_a_link_is_rate_limited_per_network(client: TestClient, sink: Sink) -> None:
    statuses = []
    for _ in range(7):
        form = client.get("/preferences/request-link")
        answer = client.post("/preferences/request-link", data={"email": ADDRESS, "csrf": csrf_of(form.text)})
        statuses.append(answer.status_code)
    assert statuses == [200] * 5 + [429] * 2


def test_one_click_unsubscribe_by_post_and_get_changes_nothing(
    client: TestClient, auth: dict[str, str], sink: Sink
) -> None:
    assert record(client, auth, REF, [("offers", "email", "grant"), ("partners", "sms", "grant")]).status_code == 201
    links = {}
    for purpose, channel in (("offers", "email"), ("partners", "sms")):
        answer = client.post(
            f"/v1/subjects/{REF}/unsubscribe-links", json={"purpose": purpose, "channel": channel}, headers=auth
        )
        links[purpose] = answer.json()["url"].removeprefix("http://testserver")

    page = client.get(links["offers"], params={"lang": "en"})  # what a link scanner does
    assert page.status_code == 200 and "Stop Demo Shop offers by email?" in page.text
    assert check(client, auth, "offers", "email") == "granted"
    assert len(events(client)) == 2

    client.cookies.clear()
    bare = client.post(links["offers"], data={"other": "field"})
    assert bare.status_code == 400, "only the RFC 8058 body unsubscribes"
    assert check(client, auth, "offers", "email") == "granted"

    done = client.post(links["offers"], data={"List-Unsubscribe": "One-Click"})  # no cookie, no login
    assert done.status_code == 200
    last = events(client)[-1]
    assert (last["action"], last["touchpoint"], last["method"], last["ui_snapshot_sha256"]) == (
        "withdraw",
        "unsubscribe",
        "one_click",
        None,
    )
    assert check(client, auth, "offers", "email") == "withdrawn"
    assert client.post(links["offers"], data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert len(events(client)) == 3, "unsubscribing twice records once"

    # multipart/form-data, as RFC 8058 prefers; from our own page the question shown is the proof
    answer = client.post(links["partners"], files={"List-Unsubscribe": (None, "One-Click"), "source": (None, "page")})
    assert answer.status_code == 200
    assert events(client)[-1]["ui_snapshot_sha256"] is not None
    assert check(client, auth, "partners", "sms") == "withdrawn"


def test_the_switch_mails_no_more_than_the_resend_limit(client: TestClient, auth: dict[str, str], sink: Sink) -> None:
    """Switching a double opt-in purpose on and off again cannot flood the person's inbox: the switch shares the
    resend limit (5 mails a person in 15 minutes); beyond it the grant is saved, pending, and no mail leaves."""
    token = client.post(f"/v1/subjects/{REF}/preference-links", json={"email": ADDRESS}, headers=auth).json()["token"]
    csrf = csrf_of(client.get("/preferences", params={"token": token}).text)
    answers = []
    for value in ("on", "off") * 6:
        answers.append(
            client.post(
                "/preferences/toggle",
                data={"token": token, "csrf": csrf, "lang": "en", "set": f"newsletter:email:{value}"},
            )
        )
    assert {a.status_code for a in answers} == {200}
    assert len(sink.messages) == 5
    assert "Too many emails were sent already" in answers[-2].text, "the sixth switch on"
    assert "Too many emails" not in answers[8].text, "the fifth switch on still mailed"
    assert [e["action"] for e in events(client)] == ["grant", "withdraw"] * 6, "every switch is recorded"


BUSY_FR = "Rien n'a été enregistré"


@pytest.mark.parametrize("backend", ["sqlite"])  # SQLite's one write lock; PostgreSQL waits for the row
def test_a_confirmation_met_by_a_busy_database_shows_its_page_again(
    client: TestClient, auth: dict[str, str], settings: Settings, sink: Sink
) -> None:
    """The person who clicks "confirm" while another process holds the database gets a page in their language that
    says nothing was saved, with the button to send it again (503 and Retry-After), not a JSON error."""
    client.post(f"/v1/subjects/{REF}/preference-links", json={"email": ADDRESS, "locale": "fr"}, headers=auth)
    assert record(client, auth, REF, [("newsletter", "email", "grant")]).status_code == 201
    (mail,) = sink.messages
    confirm_url = link_in(mail)
    shown = client.get(confirm_url)
    form = {"token": confirm_url.split("token=")[1], "csrf": csrf_of(shown.text)}
    with sqlite_write_lock_held(client, settings):
        busy = client.post("/preferences/confirm", data=form)
    assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
    assert busy.headers["content-type"].startswith("text/html")
    assert BUSY_FR in busy.text and 'id="pc-confirm"' in busy.text
    assert check(client, auth, "newsletter", "email") == "pending_confirmation"
    again = client.post("/preferences/confirm", data={**form, "csrf": csrf_of(busy.text)})
    assert again.status_code == 200 and "Merci, c'est confirmé" in again.text
    assert check(client, auth, "newsletter", "email") == "granted"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_one_click_unsubscribe_met_by_a_busy_database_is_a_503_to_send_again(
    client: TestClient, auth: dict[str, str], settings: Settings
) -> None:
    """A mail provider's one-click POST gets 503 and Retry-After (RFC 8058 senders retry); a person on our page sees
    that nothing was saved, in their language, with the button again."""
    assert record(client, auth, REF, [("offers", "email", "grant")]).status_code == 201
    answer = client.post(
        f"/v1/subjects/{REF}/unsubscribe-links", json={"purpose": "offers", "channel": "email"}, headers=auth
    )
    link = answer.json()["url"].removeprefix("http://testserver")
    with sqlite_write_lock_held(client, settings):
        busy = client.post(link, data={"List-Unsubscribe": "One-Click", "source": "page", "lang": "fr"})
    assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
    assert busy.headers["content-type"].startswith("text/html")
    assert BUSY_FR in busy.text and 'name="List-Unsubscribe"' in busy.text
    assert check(client, auth, "offers", "email") == "granted"
    assert client.post(link, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert check(client, auth, "offers", "email") == "withdrawn"


def test_a_confirmation_that_outlasts_the_write_window_shows_its_page_again(
    client: TestClient, auth: dict[str, str], sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A decision whose transaction outlasts `WRITE_WINDOW` is not kept (server.visibility): the person sees the
    same page as for a busy database, and the next click confirms."""
    client.post(f"/v1/subjects/{REF}/preference-links", json={"email": ADDRESS, "locale": "fr"}, headers=auth)
    assert record(client, auth, REF, [("newsletter", "email", "grant")]).status_code == 201
    confirm_url = link_in(sink.messages[0])
    form = {"token": confirm_url.split("token=")[1], "csrf": csrf_of(client.get(confirm_url).text)}
    ledger = services_of(client).ledger
    real_clock = ledger.clock
    start, readings = datetime.now(UTC), itertools.count()
    monkeypatch.setattr(ledger, "clock", lambda: start + next(readings) * WRITE_WINDOW)  # each reading a window on
    slow = client.post("/preferences/confirm", data=form)
    assert slow.status_code == 503 and slow.headers["retry-after"] == "1"
    assert BUSY_FR in slow.text and 'id="pc-confirm"' in slow.text
    assert check(client, auth, "newsletter", "email") == "pending_confirmation"
    monkeypatch.setattr(ledger, "clock", real_clock)
    assert client.post("/preferences/confirm", data=form).status_code == 200
    assert check(client, auth, "newsletter", "email") == "granted"
