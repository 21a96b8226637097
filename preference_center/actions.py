"""Which ledger decisions a click means, and the double opt-in mail. No HTTP here.

Every write goes through `Ledger.record` with the policy version shown and the exact fragment shown (proof of
display, GDPR 7(1), EDPB 05/2020 104-106).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from tortoise.transactions import in_transaction

from preference_center.center import PreferenceCenter
from preference_center.i18n import choose_language
from preference_center.mailer import MailNotSent
from preference_center.view import ON_STATUSES, Control, Row
from server.desk.contact import is_suppressed
from server.ledger.append import Decision, RecordedEvent, Snapshot
from server.ledger.append import store_snapshot as store_ui_snapshot
from server.models import Subject
from server.policies.snapshot import CatalogSnapshot

log = logging.getLogger("preference_center")
LINK_PLACEHOLDER = "<confirmation link>"  # what the stored copy of a mail shows instead of the personal link


def toggle_decision(control: Control, value: str) -> Decision | None:
    """The decision for setting `control` to `value` (on/off/object/unobject), or None if nothing changes.

    A repeated or stale click (the switch already in that position) records nothing, so a double submit or a
    reloaded form never writes twice.
    """
    status, reason = control.answer.status, control.answer.reason
    if control.kind == "switch":
        if value == "on" and reason not in ON_STATUSES:
            return Decision(control.purpose, control.channel, "grant")
        if value == "off":
            if status in ON_STATUSES:
                return Decision(control.purpose, control.channel, "withdraw")
            if status in ("no_record", "expired"):
                return Decision(control.purpose, control.channel, "deny")  # a refusal is stored like consent
        return None
    if control.kind == "object":
        if value == "object" and reason != "objected":
            return Decision(control.purpose, control.channel, "object")  # GDPR 21(3)
        if value == "unobject" and reason == "objected":
            return Decision(control.purpose, control.channel, "grant")
    return None


def unsubscribe_all_decisions(rows: Sequence[Row]) -> list[Decision]:
    """GDPR 7(3) and 21(3): every marketing consent withdrawn, every marketing channel we send on legitimate
    interest objected to, in one decision set (one transaction, one click)."""
    decisions = []
    for row in rows:
        if not row.purpose.marketing:
            continue
        for control in row.controls:
            if control.kind == "switch" and control.answer.status in ON_STATUSES:
                decisions.append(Decision(control.purpose, control.channel, "withdraw"))
            elif control.kind == "object" and control.answer.reason != "objected":
                decisions.append(Decision(control.purpose, control.channel, "object"))
    return decisions


async def store_snapshot(snapshot: Snapshot) -> None:
    """Store a UI snapshot before any event cites it (the confirmation mail is stored when it is sent; the
    `confirm` event that its link records cites it by hash). Idempotent: stored once per SHA-256."""
    async with in_transaction() as conn:
        await store_ui_snapshot(conn, snapshot)


async def send_confirmation(
    center: PreferenceCenter,
    *,
    ref: str,
    email: str,
    lang: str,
    purpose: str,
    purpose_title: str,
    channel: str,
    event_id: str,
) -> str:
    """Mail the double opt-in link for the pending grant `event_id`; returns the Message-ID.

    The mail carries no advertising. Its text is stored as a UI snapshot (kind `confirmation_mail`) with the
    personal link replaced by a placeholder, so one stored copy serves everyone who got the same text; the link's
    token carries that copy's hash and the Message-ID, which the `confirm` event records.
    """
    days = max(1, center.settings.link_token_lifetime_s // 86400)
    text = (
        center.render(
            lang,
            "mail/confirmation.txt",
            purpose_title=purpose_title,
            channel=center.channel_phrase(lang, channel),
            link=LINK_PLACEHOLDER,
            days=days,
        ).rstrip("\n")
        + "\n"
    )  # the body exactly as sent (a text/plain part ends with a line break)
    snapshot = Snapshot("confirmation_mail", text, "text/plain; charset=utf-8")
    await store_snapshot(snapshot)
    message_id = center.mailer.new_message_id()
    token, _ = center.links.issue(
        ref,
        "confirm",
        purpose=purpose,
        channel=channel,
        lang=lang,
        event=event_id,
        message_id=message_id,
        mail_snapshot=snapshot.sha256,
    )
    body = text.replace(LINK_PLACEHOLDER, center.url(f"/preferences/confirm?token={token}"))
    subject = center.gettext(lang, "Please confirm: %(purpose)s", purpose=purpose_title)
    await center.mailer.send(center.mailer.message(email, subject, body, lang, message_id=message_id))
    return message_id


async def try_send_confirmation(center: PreferenceCenter, **kwargs: str) -> bool:
    """`send_confirmation`, called after the grant's commit: whatever fails (the mail server, the outbox, a template),
    the committed grant stays pending, and the caller says so instead of failing the request."""
    try:
        await send_confirmation(center, **kwargs)
    except MailNotSent:
        return False  # the mailer logged it
    except Exception:
        log.exception("double opt-in mail not sent")
        return False
    return True


async def confirm_pending_grants(
    center: PreferenceCenter, catalog: CatalogSnapshot, ref: str, events: Sequence[RecordedEvent]
) -> list[dict[str, str]]:
    """GDPR 7(1) double opt-in for decisions recorded through the API or the console, called after their commit: the
    latest grant left `pending_confirmation` for each purpose x channel gets the preference center's confirmation
    mail, at the address on file (`POST /v1/subjects/{ref}/preference-links` sets it), in the subject's language.

    What happened to each, for the caller: `sent`; `no_email` (no address on file: the grant waits; once an address
    is set, the preference center's "send again" mails it); `suppressed` (the address belongs to an erased person, GDPR
    17); `restricted` (processing restricted, GDPR 18); `rate_limited` (more than the preference center's resend
    limit for this person); `not_sent` (the mail could not be sent; the grant stays pending, the person can ask again
    from the preference center). Nothing here fails the request: the decisions are already committed."""
    latest: dict[tuple[str, str], RecordedEvent] = {}
    for event in events:
        if event.status == "pending_confirmation" and event.action == "grant":
            latest[(event.purpose, event.channel)] = event  # an earlier pending event's link would confirm nothing
    if not latest:
        return []
    try:
        subject = await Subject.get(ref=ref)
        blocked = await _why_no_mail(center, subject)
    except Exception:
        log.exception("double opt-in mail: the subject could not be read")
        return [_outcome(event, "not_sent") for event in latest.values()]
    lang = choose_language(None, subject.locale, None)
    return [
        _outcome(event, blocked or await _mail_confirmation(center, catalog, subject, lang, event))
        for event in latest.values()
    ]


def _outcome(event: RecordedEvent, mail: str) -> dict[str, str]:
    return {"event_id": event.id, "purpose": event.purpose, "channel": event.channel, "mail": mail}


async def _why_no_mail(center: PreferenceCenter, subject: Subject) -> str | None:
    """Why no confirmation mail may go to this subject (see `confirm_pending_grants`), or None."""
    if subject.restricted_at is not None:
        return "restricted"
    if not subject.email:
        return "no_email"
    if await is_suppressed(center.settings.secret_key, email=subject.email):
        return "suppressed"
    return None


async def _mail_confirmation(
    center: PreferenceCenter, catalog: CatalogSnapshot, subject: Subject, lang: str, event: RecordedEvent
) -> str:
    assert subject.email is not None  # `_why_no_mail`
    if not center.link_requests.allow(f"resend:{subject.ref}"):
        return "rate_limited"
    purpose = catalog.purposes.get(event.purpose)
    titles = purpose.titles if purpose is not None else {}
    sent = await try_send_confirmation(
        center,
        ref=subject.ref,
        email=subject.email,
        lang=lang,
        purpose=event.purpose,
        purpose_title=titles.get(lang) or titles.get("en") or event.purpose,
        channel=event.channel,
        event_id=event.id,
    )
    return "sent" if sent else "not_sent"


async def send_preferences_link(center: PreferenceCenter, *, ref: str, email: str, lang: str) -> None:
    """The "send me a link" mail: a fresh link to the preference center, nothing else."""
    token, _ = center.links.issue(ref, "preferences", lang=lang)
    days = max(1, center.settings.link_token_lifetime_s // 86400)
    body = center.render(lang, "mail/link.txt", link=center.url(f"/preferences?token={token}&lang={lang}"), days=days)
    subject = center.gettext(lang, "Your link to manage your preferences")
    try:
        await center.mailer.send(center.mailer.message(email, subject, body, lang))
    except MailNotSent:
        log.warning("preferences link not sent")
