"""Recipients (GDPR 19): the systems the controller discloses consent data to, and what each was told.

A `Recipient` is a downstream system (an ESP, an SMS gateway, a CRM) registered by the operator. Every
withdrawal, objection, erasure, restriction (and its lifting) and rectification queues one `RecipientNotice` per
active recipient, in the transaction that makes the change, so a committed change is never left untold and a
refused one is never told. The dispatcher delivers the notices as signed JWS and records each answer.

A notice holds no contact data: a rectification names the fields changed, and their values are read from the
subject row when the notice is sent (an erasure in between leaves nothing to send).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.indexes import Index
from tortoise.models import Model

if TYPE_CHECKING:
    from server.models.subjects import Subject

DUE_INDEX = "recipient_notices_due"
BY_SUBJECT_INDEX = "recipient_notices_by_subject"


class Recipient(Model):
    """A system that receives consent data and must be told of changes to it (GDPR 19)."""

    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=128, unique=True)
    url = fields.CharField(max_length=2048)
    # The purposes whose withdrawals and objections it is told of (empty: every purpose). Erasures, restrictions
    # and rectifications concern the person, so every recipient is told of them.
    purposes: list[str] = fields.JSONField(default=list)
    created_at = fields.DatetimeField()
    disabled_at = fields.DatetimeField(null=True)
    # Set when it could not take a notice: none of its notices is sent before then (server.recipients.dispatcher).
    unavailable_until = fields.DatetimeField(null=True)

    class Meta:
        table = "recipients"


class RecipientNotice(Model):
    """One change to tell one recipient, and how the telling went.

    `status`: `pending` (to send at `next_attempt_at`), `delivered` (the recipient answered 2xx: `answered_at`,
    `answer_status` and the SHA-256 of its answer body are the acknowledgement kept as proof), or `failed` (given
    up after the retry period; shown to agents, who can send it again). `lease_until` and `lease_token` let one
    dispatcher at a time send a notice when several server processes run.
    """

    id = fields.UUIDField(primary_key=True)
    recipient: fields.ForeignKeyRelation[Recipient] = fields.ForeignKeyField(
        "models.Recipient", related_name="notices", on_delete=fields.RESTRICT
    )
    subject: fields.ForeignKeyRelation[Subject] = fields.ForeignKeyField(
        "models.Subject", related_name="recipient_notices", on_delete=fields.RESTRICT
    )
    kind = fields.CharField(max_length=32)
    # withdrawal / objection: the event; rectification: the field names; others: nothing more.
    event_id = fields.UUIDField(null=True)
    purpose_id = fields.CharField(max_length=64, null=True)
    channel_id = fields.CharField(max_length=16, null=True)
    field_names: list[str] = fields.JSONField(default=list)
    changed_at = fields.DatetimeField()
    status = fields.CharField(max_length=16, default="pending")
    attempts = fields.IntField(default=0)
    # Retried until `retry_from` + the retry period; sending a failed notice again starts a new period.
    retry_from = fields.DatetimeField()
    next_attempt_at = fields.DatetimeField()
    lease_until = fields.DatetimeField(null=True)
    lease_token = fields.CharField(max_length=32, null=True)
    last_error = fields.CharField(max_length=255, null=True)
    answered_at = fields.DatetimeField(null=True)
    answer_status = fields.IntField(null=True)
    answer_sha256 = fields.CharField(max_length=64, null=True)

    class Meta:
        table = "recipient_notices"
        indexes = (
            Index(fields=("status", "next_attempt_at"), name=DUE_INDEX),
            Index(fields=("subject_id", "changed_at"), name=BY_SUBJECT_INDEX),
        )
