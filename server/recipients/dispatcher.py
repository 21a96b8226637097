"""Sending the queued notices to recipients: signed, retried, acknowledged.

Each notice goes as one HTTP POST whose body is a JWT (`Content-Type: application/jwt`, header `typ`
`consent-notice+jwt`, `exp` an hour after it was signed) signed with the service's current key. A recipient checks
it against the service's JWKS (`/.well-known/jwks.json`) and needs no shared secret. The payload names the subject
by the company's `ref`, the kind of change and when it was made. A withdrawal or objection also names the purpose,
the channel and the ledger event; a rectification names the fields and their values now, read when the notice is
sent. `jti` is the notice id: a recipient can drop a notice it has already seen, since a notice may arrive twice
(delivery is at least once).

A 2xx answer is the acknowledgement: its status, time and the SHA-256 of its first 64 KiB are kept as proof. Each
attempt has `timeout_s` in all (connection, sending, answer); redirects are not followed. Anything else is tried
again, at first 30 s later, then after as long again as the notice has been waiting (so 30 s, 30 s, 1 min,
2 min, ..., at most 6 h apart), until `retry_for` has passed since the change (or since it was sent again); the
notice is then `failed`, which agents see on the customer's page and can send again. An answer whose body is still
coming when the time is up counts as no answer (the notice comes again: delivery is at least once).

Within a round a recipient gets its notices one after the other, oldest change first. When it is unavailable (no
connection, a timeout, 5xx, 408, 429), none of its notices is sent before that notice's retry
(`recipients.unavailable_until`), new ones included, and none counts an attempt: a recipient that is down is
tried once per retry, whatever its backlog; those of its notices waiting longer than the retry period are marked
failed with that error. A notice it refuses (another 4xx) is retried on its own and does not hold the others back.

The server runs the dispatcher in one process at a time (a background job, server.leases), and `recipients deliver`
may run beside it: a notice is claimed just before it is sent, with a conditional update that writes a lease (a
token and an expiry longer than an attempt can take), and the outcome is written only under that lease. One
process at a time sends a notice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import httpx
from joserfc import jwt
from tortoise.expressions import Q

from server.auth.keys import KeyStore
from server.models import Recipient, RecipientNotice, Subject
from server.settings import Settings

log = logging.getLogger("server.recipients")

NOTICE_TYP = "consent-notice+jwt"
ALGORITHM = "ES256"
TOKEN_LIFETIME_S = 3600
FIRST_RETRY = timedelta(seconds=30)
LONGEST_RETRY = timedelta(hours=6)
ANSWER_BYTES = 64 * 1024  # the part of an answer body read, and hashed as its acknowledgement
BATCH = 100
PARALLEL = 8
UNAVAILABLE = frozenset({408, 429})  # with every 5xx: the recipient, not this notice, is the problem


def retry_delay(waited: timedelta) -> timedelta:
    """The wait before the next attempt of a notice that has been waiting `waited` since it was (re)queued."""
    return min(max(waited, FIRST_RETRY), LONGEST_RETRY)


def _describe(exc: BaseException) -> str:
    """The error an agent reads: the first real one inside exception groups (httpx's transports raise those)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"[:255]


class Outcome(NamedTuple):
    """What an attempt means for the recipient's round: whether to stop it, and until when (after a failure)."""

    unavailable: bool  # the recipient could not take any notice: the round stops for it
    next_attempt_at: datetime | None
    error: str | None


class Dispatcher:
    def __init__(
        self,
        keys: KeyStore,
        issuer: str,
        clock: Callable[[], datetime],
        *,
        timeout_s: float = 10,
        retry_for: timedelta = timedelta(hours=72),
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.keys = keys
        self.issuer = issuer
        self.clock = clock
        self.timeout_s = timeout_s
        self.retry_for = retry_for
        self.transport = transport
        # Longer than any attempt can take: a lease never runs out while its holder is still sending.
        self.lease = timedelta(seconds=timeout_s + 60)
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """A change has queued notices: the running loop sends them now rather than at its next poll."""
        self._wake.set()

    async def run(self, poll_s: int) -> None:
        """Deliver due notices when woken, and every `poll_s` seconds for retries."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=poll_s or None)
            self._wake.clear()
            try:
                while await self.deliver_due() == BATCH:
                    pass
            except Exception:  # a failed round is logged and tried again at the next wake or poll
                log.exception("recipient delivery round failed")

    async def deliver_due(self) -> int:
        """Send the notices due now (up to BATCH); returns how many were looked at (sent, or postponed behind an
        unavailable recipient)."""
        now = self.clock()
        due = (
            await RecipientNotice.filter(status="pending", next_attempt_at__lte=now)
            .filter(Q(lease_until=None) | Q(lease_until__lt=now))
            .filter(Q(recipient__unavailable_until=None) | Q(recipient__unavailable_until__lte=now))
            .order_by("next_attempt_at", "changed_at", "id")
            .limit(BATCH)
            .values_list("id", "recipient_id", "changed_at")
        )
        by_recipient: dict[int, list[tuple[datetime, Any]]] = {}
        for notice_id, recipient_id, changed_at in due:
            by_recipient.setdefault(recipient_id, []).append((changed_at, notice_id))
        if not by_recipient:
            return 0
        limit = asyncio.Semaphore(PARALLEL)
        async with httpx.AsyncClient(
            timeout=self.timeout_s, follow_redirects=False, transport=self.transport
        ) as client:

            async def one_recipient(recipient_id: int, queued: list[tuple[datetime, Any]]) -> None:
                notice_ids = [notice_id for _, notice_id in sorted(queued, key=lambda item: item[0])]
                async with limit:
                    for notice_id in notice_ids:
                        outcome = await self._claim_and_deliver(client, notice_id)
                        if outcome is not None and outcome.unavailable:
                            await self._unavailable(recipient_id, outcome)
                            return

            rounds = await asyncio.gather(
                *(one_recipient(recipient, queued) for recipient, queued in by_recipient.items()),
                return_exceptions=True,
            )
        for failure in rounds:
            if isinstance(failure, BaseException):
                log.error("a recipient's round failed", exc_info=failure)
        return len(due)

    async def _unavailable(self, recipient_id: int, outcome: Outcome) -> None:
        """The recipient could not take a notice: none of its notices is sent before the failed one's retry (new
        ones included), and those waiting longer than the retry period are marked failed now, with that error."""
        now = self.clock()
        await Recipient.filter(id=recipient_id).update(unavailable_until=outcome.next_attempt_at)
        await (
            RecipientNotice.filter(recipient_id=recipient_id, status="pending", retry_from__lte=now - self.retry_for)
            .filter(Q(lease_until=None) | Q(lease_until__lt=now))
            .update(status="failed", last_error=f"recipient unavailable: {outcome.error}"[:255])
        )

    async def _claim_and_deliver(self, client: httpx.AsyncClient, notice_id: Any) -> Outcome | None:
        """Claim one notice, send it, record the outcome under the claim; None if another process had it."""
        now = self.clock()
        token = secrets.token_hex(16)
        claimed = (
            await RecipientNotice.filter(Q(id=notice_id), Q(status="pending"), Q(next_attempt_at__lte=now))
            .filter(Q(lease_until=None) | Q(lease_until__lt=now))
            .update(lease_until=now + self.lease, lease_token=token)
        )
        if not claimed:
            return None
        notice = await RecipientNotice.get(id=notice_id).prefetch_related("recipient", "subject")
        recipient: Recipient = notice.recipient
        status, digest, error = await self._post(client, recipient.url, notice)
        now = self.clock()
        attempts = notice.attempts + 1
        if error is None:
            changes: dict[str, Any] = {
                "status": "delivered",
                "answered_at": now,
                "answer_status": status,
                "answer_sha256": digest,
                "last_error": None,
            }
            outcome = Outcome(False, None, None)
            if recipient.unavailable_until is not None:
                await Recipient.filter(id=recipient.id).update(unavailable_until=None)
        else:
            gave_up = now - notice.retry_from >= self.retry_for
            next_attempt = now + retry_delay(now - notice.retry_from)
            changes = {
                "status": "failed" if gave_up else "pending",
                "last_error": error,
                "next_attempt_at": next_attempt,
            }
            unavailable = status is None or status >= 500 or status in UNAVAILABLE
            outcome = Outcome(unavailable, next_attempt, error)
            log.warning(
                "notice %s to recipient %s not delivered (%s)%s",
                notice.id,
                recipient.name,
                error,
                "; given up" if gave_up else "",
            )
        written = await RecipientNotice.filter(id=notice.id, lease_token=token).update(
            attempts=attempts, lease_until=None, lease_token=None, **changes
        )
        if not written:  # the lease ran out and another process took the notice: its outcome stands
            log.warning("notice %s: lease lost while sending; outcome not recorded", notice.id)
        return outcome

    async def _post(
        self, client: httpx.AsyncClient, url: str, notice: RecipientNotice
    ) -> tuple[int | None, str | None, str | None]:
        """(answer status, SHA-256 of the answer's first 64 KiB, error); the whole attempt within `timeout_s`."""
        try:
            token = self.sign(notice, notice.subject)
            async with asyncio.timeout(self.timeout_s):
                async with client.stream(
                    "POST",
                    url,
                    content=token.encode("ascii"),
                    headers={"Content-Type": "application/jwt", "Accept": "application/json, */*"},
                ) as response:
                    body = bytearray()
                    async for chunk in response.aiter_bytes():
                        body += chunk[: ANSWER_BYTES - len(body)]
                        if len(body) >= ANSWER_BYTES:
                            break
            if response.is_success:
                return response.status_code, hashlib.sha256(bytes(body)).hexdigest(), None
            return response.status_code, None, f"HTTP {response.status_code}"
        except TimeoutError:
            return None, None, f"no answer within {self.timeout_s:g} s"
        except Exception as exc:  # any failure to deliver is an attempt that failed, never a failed round
            return None, None, _describe(exc)

    def sign(self, notice: RecipientNotice, subject: Subject) -> str:
        payload = self.payload(notice, subject)
        key = self.keys.active
        header = {"alg": ALGORITHM, "kid": key.kid, "typ": NOTICE_TYP}
        return jwt.encode(header, payload, key, algorithms=[ALGORITHM])

    def payload(self, notice: RecipientNotice, subject: Subject) -> dict[str, Any]:
        recipient: Recipient = notice.recipient
        issued = int(self.clock().timestamp())
        payload: dict[str, Any] = {
            "iss": self.issuer,
            "aud": recipient.url,
            "jti": str(notice.id),
            "iat": issued,
            "exp": issued + TOKEN_LIFETIME_S,
            "type": notice.kind,
            "subject": subject.ref,
            "changed_at": notice.changed_at.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        }
        if notice.event_id is not None:
            payload["event_id"] = str(notice.event_id)
            payload["purpose"] = notice.purpose_id
            payload["channel"] = notice.channel_id
        if notice.kind == "rectification":
            # Values as they are now: a later rectification supersedes, an erasure leaves none to send.
            payload["fields"] = {name: getattr(subject, name) for name in notice.field_names}
        return payload

    async def send_again(self, notice_ids: list[Any]) -> int:
        """Failed notices back in the queue, due now, with a new retry period; the loop is woken."""
        count = await send_again(notice_ids, self.clock())
        if count:
            self.wake()
        return count


async def send_again(notice_ids: list[Any], now: datetime) -> int:
    """Failed notices back in the queue, due now, with a new retry period (an agent's or the operator's decision:
    their recipients are tried now, even if one was waiting out a retry)."""
    if not notice_ids:
        return 0
    failed = RecipientNotice.filter(id__in=notice_ids, status="failed")
    recipients = await failed.distinct().values_list("recipient_id", flat=True)
    count = await failed.update(status="pending", next_attempt_at=now, retry_from=now)
    if count:
        await Recipient.filter(id__in=list(recipients)).update(unavailable_until=None)
    return count


def dispatcher_for(settings: Settings, keys: KeyStore, clock: Callable[[], datetime]) -> Dispatcher:
    """The dispatcher the settings describe (RECIPIENT_TIMEOUT_SECONDS, RECIPIENT_RETRY_HOURS): the server's and the
    `recipients deliver` command's."""
    return Dispatcher(
        keys,
        settings.issuer,
        clock,
        timeout_s=settings.recipient_timeout_s,
        retry_for=timedelta(hours=settings.recipient_retry_hours),
    )
