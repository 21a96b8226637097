"""Queueing notices for recipients, inside the transaction of the change they tell (a transactional outbox).

Told: a withdrawal or an objection (the ledger, GDPR 7(3) and 21(3)), to the recipients of that purpose; an
erasure (17), a restriction and its lifting (18), a rectification (16), to every recipient. GDPR 19 asks the
controller to tell each recipient of the last three, and a recipient still sending after a withdrawal breaks 7(3).
Grants are not pushed: recipients read who may be contacted from the consent-check API or the audience change feed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple
from uuid import UUID

from tortoise.backends.base.client import BaseDBAsyncClient

from server.ids import uuid7
from server.models import Recipient, RecipientNotice

SUBJECT_KINDS = ("erasure", "restriction", "restriction_lifted", "rectification")
EVENT_KINDS = ("withdrawal", "objection")
KINDS = (*EVENT_KINDS, *SUBJECT_KINDS)
# Ledger statuses a recipient is told of, and the notice kind each one makes.
TOLD_STATUSES = {"withdrawn": "withdrawal", "objected": "objection"}


class EventChange(NamedTuple):
    """A ledger event recipients are told of."""

    event_id: str
    purpose: str
    channel: str
    status: str


def _notice(
    recipient: int,
    subject_id: str | UUID,
    kind: str,
    changed_at: datetime,
    *,
    event: EventChange | None = None,
    field_names: Sequence[str] = (),
) -> RecipientNotice:
    return RecipientNotice(
        id=uuid7(),
        recipient_id=recipient,
        subject_id=subject_id,
        kind=kind,
        event_id=event.event_id if event else None,
        purpose_id=event.purpose if event else None,
        channel_id=event.channel if event else None,
        field_names=sorted(field_names),
        changed_at=changed_at,
        next_attempt_at=changed_at,
        retry_from=changed_at,
    )


async def queue(
    conn: BaseDBAsyncClient,
    subject_id: str | UUID,
    kind: str,
    changed_at: datetime,
    *,
    field_names: Sequence[str] = (),
) -> int:
    """A change to the person (erasure, restriction, lifting, rectification): one pending notice per active
    recipient; returns how many were queued."""
    if kind not in SUBJECT_KINDS:
        raise ValueError(f"{kind!r} is not a change to the person")
    recipients = await Recipient.filter(disabled_at=None).using_db(conn).values("id")
    notices = [_notice(r["id"], subject_id, kind, changed_at, field_names=field_names) for r in recipients]
    if notices:
        await RecipientNotice.bulk_create(notices, using_db=conn)
    return len(notices)


async def queue_events(
    conn: BaseDBAsyncClient, subject_id: str | UUID, events: Sequence[EventChange], changed_at: datetime
) -> int:
    """The withdrawals and objections among `events`, each to the active recipients of its purpose; returns how
    many notices were queued."""
    told = [e for e in events if e.status in TOLD_STATUSES]
    if not told:
        return 0
    recipients = await Recipient.filter(disabled_at=None).using_db(conn).values_list("id", "purposes")
    notices = [
        _notice(recipient, subject_id, TOLD_STATUSES[event.status], changed_at, event=event)
        for event in told
        for recipient, purposes in recipients
        if not purposes or event.purpose in purposes
    ]
    if notices:
        await RecipientNotice.bulk_create(notices, using_db=conn)
    return len(notices)
