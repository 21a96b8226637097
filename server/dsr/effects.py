"""What carrying out each kind of request does. Consent is only ever written through `Ledger.record`.

- access / portability (GDPR 15, 20): a signed, expiring download link (JSON and CSV) mailed to the person.
- rectification (16): contact data corrected on the subject row; the history names the fields, not the values.
- erasure (17): contact data blanked, a suppression entry per address (keyed hash), the stored answers of keyed
  writes that named the subject deleted, the ledger kept as proof (17(3)(e); invariant 1, docs/design.md); the
  check API answers `erased` from then on.
- restriction (18): `subjects.restricted_at` set, so the check API answers `restricted`; lifted only after the
  person was told (18(3)).
- objection to direct marketing (21(3)): every marketing purpose on every channel objected to, in one record call.

GDPR 19: a rectification, an erasure, a restriction or its lifting queues a notice for every recipient in its own
transaction (`server.recipients`); an objection does so through the ledger.
"""

from __future__ import annotations

import logging
from datetime import datetime

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from server.db import lock_row, truncate_wal, vacuum_after_erasure
from server.dsr import requests as dsr
from server.dsr.context import Context
from server.dsr.deadlines import received_on
from server.dsr.notices import send_notice
from server.dsr.requests import Actor
from server.errors import InvalidRequest, NotFound
from server.kernel.idempotency import forget_subject
from server.ledger.append import Decision, RecordRequest, RecordResult, Snapshot
from server.models import ConsentState, DataSubjectRequest, DsrHistory, Subject
from server.policies.snapshot import FALLBACK_LANGUAGE, PRIVACY_POLICY
from server.recipients import outbox as notices
from server.subjects.contact import (
    normalise_email,
    normalise_locale,
    normalise_phone,
    normalised_contact,
    refuse_suppressed,
    replace_contact,
    suppress,
    suppress_former,
)

ERASED = "[erased]"
log = logging.getLogger("server.dsr")


async def _subject(request: DataSubjectRequest) -> Subject:
    subject = await Subject.get(id=request.subject_id)
    if subject.erased_at is not None:
        raise InvalidRequest("this subject's data was erased (GDPR 17); nothing more can be done for them")
    return subject


async def prepare_export(desk: Context, request: DataSubjectRequest, actor: Actor) -> dict[str, str]:
    """The download links (JSON and CSV), mailed to the person; the request is done."""
    subject = await _subject(request)
    now = desk.now()
    token = desk.export_links.issue(request.id)
    urls = {fmt: desk.url(f"/dsr/export/{token}?format={fmt}") for fmt in ("json", "csv")}
    await send_notice(
        desk.mailer,
        subject,
        request.id,
        "export",
        actor,
        now,
        desk.controller.email,
        kind=request.kind,
        json_url=urls["json"],
        csv_url=urls["csv"],
        days=max(1, desk.export_links.lifetime_s // 86400),
    )
    await dsr.complete(request, "export links issued (JSON and CSV)", actor, now)
    return urls


async def rectify(
    desk: Context, request: DataSubjectRequest, actor: Actor, *, email: str, phone: str, locale: str
) -> list[str]:
    """Correct the fields given (blank = unchanged); returns the names of the fields changed."""
    subject = await _subject(request)
    secret = desk.secret_key
    changes: dict[str, str] = {}
    if email.strip():
        changes["email"] = normalise_email(email)
    if phone.strip():
        changes["phone"] = normalise_phone(phone, desk.controller.jurisdiction)
    if locale.strip():
        changes["locale"] = normalise_locale(locale)
    changes = {k: v for k, v in changes.items() if getattr(subject, k) != v}
    if not changes:
        raise InvalidRequest("nothing to correct: give the new email, phone or language")
    await refuse_suppressed(secret, email=changes.get("email"), phone=changes.get("phone"))
    fields = sorted(changes)
    async with in_transaction() as conn:
        # Under the row lock: an erasure committed since the read above leaves nothing to correct.
        locked, now = await _lock(desk, conn, subject)
        if locked.erased_at is not None:
            raise InvalidRequest("this subject's data was erased (GDPR 17); nothing more can be done for them")
        # The replaced address is kept as a keyed hash, for an erasure to suppress (GDPR 17).
        await replace_contact(conn, secret, locked, changes, now, desk.controller.jurisdiction)
        # GDPR 16 and 5(2): the change is logged by field name; the values stay only on the subject row.
        told = await notices.queue(conn, subject.id, "rectification", now, field_names=fields)
        outcome = f"corrected: {', '.join(fields)}{_told(told)}"
        await dsr.history(request.id, actor, "rectified", outcome, now, conn)
        await dsr.complete(request, outcome, actor, now, conn)
    _wake(desk, told)
    return fields


def _erasure_targets(desk: Context, rows: list[Subject]) -> tuple[list[str], list[str], list[str]]:
    """The emails and phones to put on the suppression list, and every written form of them to scrub from free text."""
    jurisdiction = desk.controller.jurisdiction
    emails: list[str] = []
    phones: list[str] = []
    raw: list[str] = []
    for row in rows:
        email = normalised_contact(row.email, "email", jurisdiction)
        phone = normalised_contact(row.phone, "phone", jurisdiction)
        if email and email not in emails:
            emails.append(email)
        if phone and phone not in phones:
            phones.append(phone)
        raw += [v.lower() for v in (row.email, row.phone, email, phone) if v]
        if row.phone:
            raw.append("".join(ch for ch in row.phone if ch.isdigit() or ch == "+"))
    return emails, phones, list(dict.fromkeys(raw))


def _scrub(text: str | None, secrets_: list[str]) -> str | None:
    if not text:
        return text
    lowered = text.lower()
    for secret in secrets_:
        start = lowered.find(secret)
        while start >= 0:
            text = text[:start] + ERASED + text[start + len(secret) :]
            lowered = text.lower()
            start = lowered.find(secret)
    return text


async def erase(desk: Context, request: DataSubjectRequest, actor: Actor) -> None:
    subject = await _subject(request)
    now = desk.now()
    # GDPR 12(1), 19: the person is told, at the address about to be erased, before it is erased.
    await send_notice(desk.mailer, subject, request.id, "erasure", actor, now, desk.controller.email)
    async with in_transaction() as conn:
        # Under the row lock, so that a rectification is either erased here or refused (it looks again under the
        # same lock); what was read before the mail and what is there now are both erased.
        locked, _ = await _lock(desk, conn, subject)
        if locked.erased_at is not None:
            raise InvalidRequest("this subject's data was already erased")
        email, phone, raw = _erasure_targets(desk, [subject, locked])
        for kind, values in (("email", email), ("phone", phone)):
            for value in values:
                await suppress(conn, desk.secret_key, kind, value, now)
        # Every address the person had before these, too: an erased person is never contacted again at any.
        former = await suppress_former(conn, subject.id, now)
        await Subject.filter(id=subject.id).using_db(conn).update(email=None, phone=None, locale=None, erased_at=now)
        # Stored answers of keyed writes name the person (ref, links, receipts): gone with the contact data.
        await forget_subject(conn, locked.pseudonym)
        # Free text typed by the person or an agent may repeat the address: scrub it everywhere it could be.
        for row in await DataSubjectRequest.filter(subject_id=subject.id).using_db(conn):
            scrubbed = {name: _scrub(getattr(row, name), raw) for name in ("details", "outcome", "extension_reason")}
            if any(scrubbed[name] != getattr(row, name) for name in scrubbed):
                await DataSubjectRequest.filter(id=row.id).using_db(conn).update(**scrubbed)
            for step in await DsrHistory.filter(request_id=row.id).using_db(conn):
                note = _scrub(step.note, raw)
                if note != step.note:
                    await DsrHistory.filter(id=step.id).using_db(conn).update(note=note)
        told = await notices.queue(conn, subject.id, "erasure", now)
        kept = ", ".join(k for k, v in (("email", email), ("phone", phone)) if v) or "none"
        if former:
            kept += f" and {former} former address(es)"
        await dsr.complete(
            request,
            f"contact data erased; suppression entries: {kept}; ledger kept as proof (GDPR 17(3)(e)){_told(told)}",
            actor,
            now,
            conn,
        )
        # Last, with the clock read just before the commit: the change feed's cursor allows for the time between
        # the two, not for the mail sent above (server.visibility).
        await Subject.filter(id=subject.id).using_db(conn).update(flags_changed_at=desk.now())
    _wake(desk, told)
    # GDPR 17: what the erasure blanked is zeroed in the database file (secure_delete); empty the WAL as well.
    if not await truncate_wal():
        log.warning("the write-ahead log was busy after an erasure: it is reused from the start, not truncated")
    # PostgreSQL: the row versions the erasure replaced or deleted are pruned now, not at autovacuum's next pass.
    await vacuum_after_erasure()


async def restrict(desk: Context, request: DataSubjectRequest, actor: Actor) -> None:
    subject = await _subject(request)
    async with in_transaction() as conn:
        locked, now = await _lock(desk, conn, subject)
        told = 0
        if locked.restricted_at is None:  # as it stands once the row is ours, not as read before
            await Subject.filter(id=subject.id).using_db(conn).update(restricted_at=now, flags_changed_at=now)
            told = await notices.queue(conn, subject.id, "restriction", now)
    _wake(desk, told)
    await dsr.complete(
        request, f"processing restricted (GDPR 18): consent checks answer 'restricted'{_told(told)}", actor, now
    )


async def notify_lift(desk: Context, request: DataSubjectRequest, actor: Actor, lift_on: str, reason: str) -> None:
    """GDPR 18(3): the person is told before the restriction is lifted."""
    subject = await Subject.get(id=request.subject_id)
    if request.kind != "restriction" or subject.restricted_at is None:
        raise InvalidRequest("there is no restriction in force for this request")
    if not reason.strip():
        raise InvalidRequest("give the reason for lifting the restriction", parameter="reason")
    now = desk.now()
    sent = await send_notice(
        desk.mailer,
        subject,
        request.id,
        "restriction_lift",
        actor,
        now,
        desk.controller.email,
        lift_on=lift_on,
        reason=reason.strip(),
    )
    await dsr.history(request.id, actor, "customer_informed", "mail" if sent else "to be told by phone", now)


async def lift(desk: Context, request: DataSubjectRequest, actor: Actor) -> None:
    subject = await Subject.get(id=request.subject_id)
    if request.kind != "restriction" or subject.restricted_at is None:
        raise InvalidRequest("there is no restriction in force for this request")
    informed = await DsrHistory.filter(
        request_id=request.id, action="customer_informed", at__gte=subject.restricted_at
    ).exists()
    if not informed:
        raise InvalidRequest("GDPR 18(3): the person must be told before the restriction is lifted")
    async with in_transaction() as conn:
        locked, now = await _lock(desk, conn, subject)
        told = 0
        if locked.restricted_at is not None:  # lifted once, even if two agents lift it at the same time
            await Subject.filter(id=subject.id).using_db(conn).update(restricted_at=None, flags_changed_at=now)
            told = await notices.queue(conn, subject.id, "restriction_lifted", now)
    _wake(desk, told)
    await dsr.history(request.id, actor, "restriction_lifted", _told(told).removeprefix("; "), now)


def _told(count: int) -> str:
    """For the request's history: how many recipients will be told (GDPR 19)."""
    return f"; {count} recipient(s) to be told (GDPR 19)" if count else ""


def _wake(desk: Context, told: int) -> None:
    """After the commit: the dispatcher sends the notices just queued (GDPR 19) without waiting for its poll."""
    if told:
        desk.recipients.wake()


async def _lock(desk: Context, conn: BaseDBAsyncClient, subject: Subject) -> tuple[Subject, datetime]:
    """The subject's row, locked, and the clock read after that: a decision being recorded for the same subject
    cannot hold the commit of a flag change back past the change feed's window (server.visibility)."""
    await lock_row(conn, "subjects", subject.id)
    locked = await Subject.get(id=subject.id, using_db=conn)
    return locked, desk.now()


async def object_to_marketing(
    desk: Context, request: DataSubjectRequest, actor: Actor, *, touchpoint: str = "agent"
) -> RecordResult | None:
    """GDPR 21(3): one record call objecting to every marketing purpose on every channel (already objected ones
    are skipped: an objection cannot be recorded twice). Returns None when there was nothing left to object to."""
    subject = await _subject(request)
    catalog = await desk.catalog.get()
    current = {
        (s["purpose_id"], s["channel_id"]): s["status"]
        for s in await ConsentState.filter(subject_id=subject.id).values("purpose_id", "channel_id", "status")
    }
    decisions = [
        Decision(code, channel, "object")
        for code, purpose in sorted(catalog.purposes.items())
        if purpose.marketing
        for channel in sorted(purpose.channels)
        if current.get((code, channel)) != "objected"
    ]
    now = desk.now()
    result = None
    if decisions:
        policy = catalog.in_force(PRIVACY_POLICY, subject.locale or FALLBACK_LANGUAGE, now)
        if policy is None:
            raise NotFound("no published version of the privacy policy is in force", parameter="policy")
        text = (
            f"Objection to direct marketing (GDPR 21(3)), request #{request.id} received "
            f"{received_on(request.received_at, desk.zone).isoformat()}: every marketing purpose on every channel "
            f"({', '.join(f'{d.purpose}/{d.channel}' for d in decisions)})."
        )
        result = await desk.ledger.record(
            RecordRequest(
                ref=subject.ref,
                policy=policy.label,
                decisions=decisions,
                touchpoint=touchpoint,
                method="dsr_objection",
                actor_type="agent" if actor.type == "staff" else actor.type,
                actor_id=actor.id,
                evidence={"reference": f"DSR-{request.id}"},
                snapshot=Snapshot("dsr_objection", text, "text/plain; charset=utf-8"),
            )
        )
    count = len(decisions)
    await dsr.complete(request, f"objection recorded on {count} purpose x channel pair(s)", actor, now)
    return result
