"""`OptIn`: record decisions and send the confirmation a pending double opt-in needs; the "send me a link" mail.

Every write goes through `Ledger.record`. A mail is sent after the commit: whatever fails (the mail server, a
template), the committed grant stays pending and the caller is told, never the request failed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from tortoise.transactions import in_transaction

from server.i18n import choose_language
from server.ledger.append import Ledger, RecordedEvent, RecordRequest, RecordResult, Snapshot
from server.ledger.append import store_snapshot as store_ui_snapshot
from server.limits import Limiter, Rule
from server.links.tokens import LinkTokens
from server.mail.mailer import Mailer, MailNotSent
from server.models import Subject
from server.policies.catalog import Catalog
from server.policies.snapshot import CatalogSnapshot
from server.subjects.contact import is_suppressed

log = logging.getLogger("server.optin")
LINK_PLACEHOLDER = "<confirmation link>"  # what the stored copy of a mail shows instead of the personal link
MAILS_PER_PERSON = 5  # confirmation mails to one person in MAIL_WINDOW_S, whoever asks for them
MAIL_WINDOW_S = 15 * 60
# Fails closed: with the limits' store down no confirmation mail leaves (the person can ask again), none floods.
MAIL_RULE = Rule("mail-person", MAILS_PER_PERSON, MAIL_WINDOW_S, fail_open=False)


class MailTexts(Protocol):
    """The wording of the mails to a person, in their language (the preference center's catalogues)."""

    def confirmation(self, lang: str, *, purpose_title: str, channel: str, link: str, days: int) -> tuple[str, str]:
        """(subject, body) of the double opt-in mail for `purpose_title` on `channel`."""
        ...

    def preferences_link(self, lang: str, *, link: str, days: int) -> tuple[str, str]:
        """(subject, body) of the mail carrying a link to the preference center."""
        ...


@dataclass(frozen=True)
class Recorded:
    result: RecordResult
    # What happened to each pending grant's confirmation mail (`OptIn.confirm_pending`).
    confirmations: list[dict[str, str]]


class OptIn:
    def __init__(
        self,
        *,
        ledger: Ledger,
        catalog: Catalog,
        links: LinkTokens,
        mailer: Mailer,
        texts: MailTexts,
        secret_key: str,
        public_url: str,
        link_lifetime_s: int,
        limiter: Limiter,
    ) -> None:
        self.ledger = ledger
        self.catalog = catalog
        self.links = links
        self.mailer = mailer
        self.texts = texts
        self.secret_key = secret_key
        self.public_url = public_url
        self.link_days = max(1, link_lifetime_s // 86400)
        # One count per person for every confirmation mail, whoever triggers it: a forwarded link, an API client or
        # an agent cannot turn grants into a way to flood the person's inbox.
        self.limiter = limiter

    def url(self, path: str) -> str:
        return f"{self.public_url}{path}"

    async def may_mail(self, ref: str) -> bool:
        """Count one confirmation mail to the person of `ref` (shared by every process); False once over the limit."""
        return await self.limiter.allow(MAIL_RULE, ref)

    async def record(
        self,
        request: RecordRequest,
        lang: str | None = None,
        recorded: Callable[[RecordResult], Awaitable[None]] | None = None,
    ) -> Recorded:
        """`Ledger.record`, then the confirmation mail of each grant it left pending (GDPR 7(1)), in `lang` or
        else the subject's language. `recorded` is awaited between the two: a keyed request commits there
        (server.kernel.idempotency.settle), so no mail leaves before its grant is committed."""
        result = await self.ledger.record(request)
        if recorded is not None:
            await recorded(result)
        confirmations = await self.confirm_pending(await self.catalog.get(), request.ref, result.events, lang)
        return Recorded(result, confirmations)

    async def confirm_pending(
        self, catalog: CatalogSnapshot, ref: str, events: Sequence[RecordedEvent], lang: str | None = None
    ) -> list[dict[str, str]]:
        """GDPR 7(1) double opt-in for decisions already committed: the latest grant left `pending_confirmation`
        for each purpose x channel gets the confirmation mail, at the address on file (`POST
        /v1/subjects/{ref}/preference-links` sets it), in `lang` or else the subject's language.

        What happened to each, for the caller: `sent`; `no_email` (no address on file: the grant waits; once an
        address is set, the preference center's "send again" mails it); `suppressed` (the address belongs to an
        erased person, GDPR 17); `restricted` (processing restricted, GDPR 18); `rate_limited` (more than
        MAILS_PER_PERSON for this person); `not_sent` (the mail could not be sent; the grant stays pending, the
        person can ask again from the preference center). Nothing here fails: the decisions are committed."""
        latest = awaiting_confirmation(events)
        if not latest:
            return []
        try:
            subject = await Subject.get(ref=ref)
            blocked = await self._why_no_mail(subject)
        except Exception:
            log.exception("double opt-in mail: the subject could not be read")
            return [_outcome(event, "not_sent") for event in latest]
        lang = choose_language(lang, subject.locale, None)
        return [
            _outcome(event, blocked or await self._mail_confirmation(catalog, subject, lang, event)) for event in latest
        ]

    async def _why_no_mail(self, subject: Subject) -> str | None:
        """Why no confirmation mail may go to this subject (see `confirm_pending`), or None."""
        if subject.restricted_at is not None:
            return "restricted"
        if not subject.email:
            return "no_email"
        if await is_suppressed(self.secret_key, email=subject.email):
            return "suppressed"
        return None

    async def _mail_confirmation(
        self, catalog: CatalogSnapshot, subject: Subject, lang: str, event: RecordedEvent
    ) -> str:
        assert subject.email is not None  # `_why_no_mail`
        if not await self.may_mail(subject.ref):
            return "rate_limited"
        purpose = catalog.purposes.get(event.purpose)
        titles = purpose.titles if purpose is not None else {}
        sent = await self.try_send_confirmation(
            ref=subject.ref,
            email=subject.email,
            lang=lang,
            purpose=event.purpose,
            purpose_title=titles.get(lang) or titles.get("en") or event.purpose,
            channel=event.channel,
            event_id=event.id,
        )
        return "sent" if sent else "not_sent"

    async def send_confirmation(
        self,
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
        personal link replaced by a placeholder, so one stored copy serves everyone who got the same text; the
        link's token carries that copy's hash and the Message-ID, which the `confirm` event records.
        """
        subject, text = self.texts.confirmation(
            lang, purpose_title=purpose_title, channel=channel, link=LINK_PLACEHOLDER, days=self.link_days
        )
        text = text.rstrip("\n") + "\n"  # the body exactly as sent (a text/plain part ends with a line break)
        snapshot = Snapshot("confirmation_mail", text, "text/plain; charset=utf-8")
        await store_snapshot(snapshot)
        message_id = self.mailer.new_message_id()
        token, _ = self.links.issue(
            ref,
            "confirm",
            purpose=purpose,
            channel=channel,
            lang=lang,
            event=event_id,
            message_id=message_id,
            mail_snapshot=snapshot.sha256,
        )
        body = text.replace(LINK_PLACEHOLDER, self.url(f"/preferences/confirm?token={token}"))
        await self.mailer.send(self.mailer.message(email, subject, body, lang, message_id=message_id))
        return message_id

    async def try_send_confirmation(self, **kwargs: str) -> bool:
        """`send_confirmation`, called after the grant's commit: whatever fails, the grant stays pending and the
        caller says so instead of failing the request."""
        try:
            await self.send_confirmation(**kwargs)
        except MailNotSent:
            return False  # the mailer logged it
        except Exception:
            log.exception("double opt-in mail not sent")
            return False
        return True

    async def send_preferences_link(self, *, ref: str, email: str, lang: str) -> None:
        """The "send me a link" mail: a fresh link to the preference center, nothing else."""
        token, _ = self.links.issue(ref, "preferences", lang=lang)
        link = self.url(f"/preferences?token={token}&lang={lang}")
        subject, body = self.texts.preferences_link(lang, link=link, days=self.link_days)
        try:
            await self.mailer.send(self.mailer.message(email, subject, body, lang))
        except MailNotSent:
            log.warning("preferences link not sent")


async def store_snapshot(snapshot: Snapshot) -> None:
    """Store a UI snapshot before any event cites it (the confirmation mail is stored when it is sent; the
    `confirm` event that its link records cites it by hash). Idempotent: stored once per SHA-256."""
    async with in_transaction() as conn:
        await store_ui_snapshot(conn, snapshot)


def awaiting_confirmation(events: Sequence[RecordedEvent]) -> list[RecordedEvent]:
    """The latest grant left `pending_confirmation` of each purpose x channel: each gets a confirmation mail (an
    earlier pending event's link would confirm nothing)."""
    latest: dict[tuple[str, str], RecordedEvent] = {}
    for event in events:
        if event.status == "pending_confirmation" and event.action == "grant":
            latest[(event.purpose, event.channel)] = event
    return list(latest.values())


def not_sent(events: Sequence[RecordedEvent]) -> list[dict[str, str]]:
    """The confirmations of `events` as they stand at their commit, before any mail: `not_sent` each (the answer a
    keyed write stores when it commits; the outcomes replace it once the mails are tried)."""
    return [_outcome(event, "not_sent") for event in awaiting_confirmation(events)]


def _outcome(event: RecordedEvent, mail: str) -> dict[str, str]:
    return {"event_id": event.id, "purpose": event.purpose, "channel": event.channel, "mail": mail}
