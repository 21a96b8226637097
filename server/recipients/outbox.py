"""Queueing notices for recipients, inside the transaction of the change they tell (a transactional outbox).

Told: a withdrawal or an objection (the ledger, GDPR 7(3) and 21(3)), an erasure (17), a restriction and its
lifting (18), a rectification (16); GDPR 19 asks the controller to tell each recipient of the last three, and a
recipient still sending after a withdrawal breaks 7(3). Grants are not pushed: recipients read who may be
contacted from the consent-check API or the audience change feed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from tortoise.backends.base.client import BaseDBAsyncClient

from server.ids import uuid7
from server.models import Recipient, RecipientNotice

KINDS = ("withdrawal", "objection", "erasure", "restriction", "restriction_lifted", "rectification")
# Ledger statuses a recipient is told of, and the notice kind each one makes.
TOLD_STATUSES = {"withdrawn": "withdrawal", "objected": "objection"}


async def queue(
    conn: BaseDBAsyncClient,
    subject_id: str | UUID,
    kind: str,
    changed_at: datetime,
    *,
    event_id: str | None = None,
    purpose: str | None = None,
    channel: str | None = None,
    field_names: Sequence[str] = (),
) -> int:
    """One pending notice per active recipient; returns how many were queued."""
    if kind not in KINDS:
        raise ValueError(f"unknown notice kind {kind!r}")
    recipients = await Recipient.filter(disabled_at=None).using_db(conn).values_list("id", flat=True)
    if not recipients:
        return 0
    await RecipientNotice.bulk_create(
        [
            RecipientNotice(
                id=uuid7(),
                recipient_id=recipient,
                subject_id=subject_id,
                kind=kind,
                event_id=event_id,
                purpose_id=purpose,
                channel_id=channel,
                field_names=sorted(field_names),
                changed_at=changed_at,
                next_attempt_at=changed_at,
                retry_from=changed_at,
            )
            for recipient in recipients
        ],
        using_db=conn,
    )
    return len(recipients)
