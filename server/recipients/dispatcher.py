"""Sending the queued notices to recipients: signed, retried, acknowledged.

Each notice goes as one HTTP POST whose body is a JWT (`Content-Type: application/jwt`, header `typ`
`consent-notice+jwt`) signed with the service's current key. A recipient checks it against the service's JWKS
(`/.well-known/jwks.json`) and needs no shared secret. The payload names the subject by the company's `ref`,
the kind of change and when it was made. A withdrawal or objection also names the purpose, the channel and the
ledger event; a rectification names the fields and their values now, read when the notice is sent. `jti` is the
notice id: a recipient can drop a notice it has already seen, since a notice may arrive twice (delivery is at
least once).

A 2xx answer is the acknowledgement: its status, time and the SHA-256 of its body are kept as proof. Anything
else (another status, a timeout, a refused connection) is tried again after 30 s, 1 min, 2 min, ... (at most 6 h
apart) until `retry_for` has passed since the change (or since it was sent again); the notice is then `failed`,
which agents see on the customer's page and can send again. Redirects are not followed.

Notices carry `changed_at` to the microsecond. Within a round a recipient gets its notices oldest first, but a
retried notice can arrive after a later one: a recipient applies a notice only if its `changed_at` is later than
the last it applied for that person (a restriction arriving after its lifting is then ignored).

Several server processes may run a dispatcher each: a notice is claimed with a conditional update of its
`lease_until` before it is sent, so one process sends it at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
from joserfc import jwt
from tortoise.expressions import Q

from server.auth.keys import KeyStore
from server.models import Recipient, RecipientNotice, Subject

log = logging.getLogger("server.recipients")

NOTICE_TYP = "consent-notice+jwt"
ALGORITHM = "ES256"
LEASE = timedelta(seconds=120)
FIRST_RETRY = timedelta(seconds=30)
LONGEST_RETRY = timedelta(hours=6)
ANSWER_BYTES = 64 * 1024  # the part of an answer body hashed as its acknowledgement
BATCH = 100
PARALLEL = 8


def retry_delay(attempts: int) -> timedelta:
    """After the n-th failed attempt: 30 s, 1 min, 2 min, ... capped at 6 h."""
    return min(FIRST_RETRY * (2 ** min(attempts - 1, 20)), LONGEST_RETRY)


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
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """A change has queued notices: the running loop sends them now rather than at its next poll."""
        self._wake.set()

    async def run(self, poll_s: int) -> None:
        """Deliver due notices when woken, and every `poll_s` seconds for retries (0: only when woken)."""
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
        """Send the notices due now (up to BATCH); returns how many were tried or postponed.

        Each recipient's notices go one after the other, oldest change first, so a recipient learns of a
        restriction before its lifting. The first that fails stops that recipient's round: the rest are postponed
        to the same next attempt, without counting an attempt (a recipient that is down is tried once a round).
        """
        now = self.clock()
        due = (
            await RecipientNotice.filter(status="pending", next_attempt_at__lte=now)
            .order_by("next_attempt_at", "changed_at", "id")
            .limit(BATCH)
            .values_list("id", "recipient_id", "changed_at")
        )
        by_recipient: dict[int, list[tuple[datetime, Any]]] = {}
        for notice_id, recipient_id, changed_at in due:
            taken = (
                await RecipientNotice.filter(Q(id=notice_id), Q(status="pending"))
                .filter(Q(lease_until=None) | Q(lease_until__lt=now))
                .update(lease_until=now + LEASE)
            )
            if taken:
                by_recipient.setdefault(recipient_id, []).append((changed_at, notice_id))
        if not by_recipient:
            return 0
        limit = asyncio.Semaphore(PARALLEL)
        async with httpx.AsyncClient(
            timeout=self.timeout_s, follow_redirects=False, transport=self.transport
        ) as client:

            async def one_recipient(claimed: list[tuple[datetime, Any]]) -> None:
                notice_ids = [notice_id for _, notice_id in sorted(claimed, key=lambda item: item[0])]
                async with limit:
                    for position, notice_id in enumerate(notice_ids):
                        retry_at = await self._deliver(client, notice_id)
                        if retry_at is not None:
                            if rest := notice_ids[position + 1 :]:
                                await RecipientNotice.filter(id__in=rest).update(
                                    next_attempt_at=retry_at, lease_until=None
                                )
                            return

            await asyncio.gather(*(one_recipient(claimed) for claimed in by_recipient.values()))
        return sum(len(ids) for ids in by_recipient.values())

    async def _deliver(self, client: httpx.AsyncClient, notice_id: Any) -> datetime | None:
        """Send one notice and record the outcome; returns its next attempt if it was not acknowledged."""
        notice = await RecipientNotice.get(id=notice_id).prefetch_related("recipient", "subject")
        recipient: Recipient = notice.recipient
        token = self.sign(notice, notice.subject)
        error: str | None = None
        answer_status = None
        digest = None
        try:
            response = await client.post(
                recipient.url,
                content=token.encode("ascii"),
                headers={"Content-Type": "application/jwt", "Accept": "application/json, */*"},
            )
            body = response.content[:ANSWER_BYTES]
            answer_status = response.status_code
            if response.is_success:
                digest = hashlib.sha256(body).hexdigest()
            else:
                error = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:255]
        now = self.clock()
        attempts = notice.attempts + 1
        if error is None:
            changes: dict[str, Any] = {
                "status": "delivered",
                "answered_at": now,
                "answer_status": answer_status,
                "answer_sha256": digest,
                "last_error": None,
            }
        else:
            gave_up = now - notice.retry_from >= self.retry_for
            changes = {"status": "failed" if gave_up else "pending", "last_error": error}
            changes["next_attempt_at"] = now + retry_delay(attempts)
            log.warning(
                "notice %s to recipient %s not delivered (%s)%s",
                notice.id,
                recipient.name,
                error,
                "; given up" if gave_up else "",
            )
        await RecipientNotice.filter(id=notice.id).update(attempts=attempts, lease_until=None, **changes)
        return None if error is None else changes["next_attempt_at"]

    def sign(self, notice: RecipientNotice, subject: Subject) -> str:
        payload = self.payload(notice, subject)
        key = self.keys.active
        header = {"alg": ALGORITHM, "kid": key.kid, "typ": NOTICE_TYP}
        return jwt.encode(header, payload, key, algorithms=[ALGORITHM])

    def payload(self, notice: RecipientNotice, subject: Subject) -> dict[str, Any]:
        recipient: Recipient = notice.recipient
        payload: dict[str, Any] = {
            "iss": self.issuer,
            "aud": recipient.url,
            "jti": str(notice.id),
            "iat": int(self.clock().timestamp()),
            "type": notice.kind,
            "subject": subject.ref,
            "changed_at": notice.changed_at.isoformat().replace("+00:00", "Z"),
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
        """Failed notices back in the queue, due now (an agent's or the operator's decision)."""
        now = self.clock()
        count = await RecipientNotice.filter(id__in=notice_ids, status="failed").update(
            status="pending", next_attempt_at=now, retry_from=now
        )
        if count:
            self.wake()
        return count
