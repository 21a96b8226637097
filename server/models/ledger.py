"""The consent ledger (append-only events), its state projection and the UI snapshots events cite."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tortoise import fields
from tortoise.indexes import Index
from tortoise.models import Model

from server.indexes import CHECK_STATE_COLUMNS, CHECK_STATE_INDEX

if TYPE_CHECKING:
    from server.models.catalog import Channel, PolicyVersion, Purpose
    from server.models.subjects import Subject

# The audience export's read: one purpose x channel's states, in subject order, every column it reads.
AUDIENCE_STATE_INDEX = "consent_states_by_pair"
AUDIENCE_STATE_COLUMNS = (
    "purpose_id",
    "channel_id",
    "subject_id",
    "status",
    "since",
    "valid_until",
    "policy_version_id",
)
# The audience change feed's reads: one purpose x channel's states decided after an instant, or expiring between two.
CHANGED_STATE_INDEX = "consent_states_changed"
CHANGED_STATE_COLUMNS = ("purpose_id", "channel_id", "since")
EXPIRING_STATE_INDEX = "consent_states_expiring"
EXPIRING_STATE_COLUMNS = ("purpose_id", "channel_id", "valid_until")


class UISnapshot(Model):
    """The exact text/HTML a person was shown, stored once under its SHA-256 (proof of display)."""

    sha256 = fields.CharField(max_length=64, primary_key=True)
    kind = fields.CharField(max_length=32)
    content_type = fields.CharField(max_length=64, default="text/html; charset=utf-8")
    content = fields.TextField()
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "ui_snapshots"


class ConsentEvent(Model):
    """One decision about one subject x purpose x channel. Rows are inserted, never updated or deleted.

    `hash` = SHA-256 of the RFC 8785 canonical JSON of the event's fields plus `prev_hash` (see
    `server.ledger.chain`). Queries are always by subject or by time range, so the table can later be partitioned by
    `recorded_at` and distributed by `subject_id` (docs/design.md, "Not built").
    """

    id = fields.UUIDField(primary_key=True)
    subject: fields.ForeignKeyRelation[Subject] = fields.ForeignKeyField(
        "models.Subject", related_name="events", on_delete=fields.RESTRICT
    )
    seq = fields.IntField()
    purpose: fields.ForeignKeyRelation[Purpose] = fields.ForeignKeyField(
        "models.Purpose", related_name="events", on_delete=fields.RESTRICT
    )
    channel: fields.ForeignKeyRelation[Channel] = fields.ForeignKeyField(
        "models.Channel", related_name="events", on_delete=fields.RESTRICT
    )
    action = fields.CharField(max_length=16)
    status = fields.CharField(max_length=32)
    policy_version: fields.ForeignKeyRelation[PolicyVersion] = fields.ForeignKeyField(
        "models.PolicyVersion", related_name="events", on_delete=fields.RESTRICT
    )
    touchpoint = fields.CharField(max_length=32)
    method = fields.CharField(max_length=32)
    actor_type = fields.CharField(max_length=16)
    actor_id = fields.CharField(max_length=128, null=True)
    ui_snapshot_sha256 = fields.CharField(max_length=64, null=True)
    evidence: dict[str, Any] = fields.JSONField(default=dict)
    recorded_at = fields.DatetimeField()
    valid_until = fields.DatetimeField(null=True)
    prev_hash = fields.CharField(max_length=64)
    hash = fields.CharField(max_length=64, unique=True)

    class Meta:
        table = "consent_events"
        unique_together = (("subject", "seq"),)
        indexes = (("recorded_at",),)


class ConsentState(Model):
    """Current status per subject x purpose x channel, a projection of the ledger written in the same transaction.

    It can always be rebuilt from the events: `python -m server ledger verify` checks that it equals a replay, and
    `python -m server ledger repair` rewrites it from one where it does not (server.ledger.repair).
    """

    id = fields.BigIntField(primary_key=True)
    subject: fields.ForeignKeyRelation[Subject] = fields.ForeignKeyField(
        "models.Subject", related_name="states", on_delete=fields.RESTRICT
    )
    purpose: fields.ForeignKeyRelation[Purpose] = fields.ForeignKeyField(
        "models.Purpose", related_name="states", on_delete=fields.RESTRICT
    )
    channel: fields.ForeignKeyRelation[Channel] = fields.ForeignKeyField(
        "models.Channel", related_name="states", on_delete=fields.RESTRICT
    )
    status = fields.CharField(max_length=32)
    event: fields.ForeignKeyRelation[ConsentEvent] = fields.ForeignKeyField(
        "models.ConsentEvent", related_name="states", on_delete=fields.RESTRICT
    )
    policy_version: fields.ForeignKeyRelation[PolicyVersion] = fields.ForeignKeyField(
        "models.PolicyVersion", related_name="states", on_delete=fields.RESTRICT
    )
    since = fields.DatetimeField()
    valid_until = fields.DatetimeField(null=True)

    class Meta:
        table = "consent_states"
        unique_together = (("subject", "purpose", "channel"),)
        # Both indexes cover a read, so that it comes from the index alone, no table row: the consent check (one
        # subject, bench/README.md "Where a stream's time goes") and the audience export (one purpose x channel,
        # in subject order, so that its lookups of the subjects come in index order: "Where an audience export's
        # time goes"). Named, because the SQLite readers name them (INDEXED BY): without statistics SQLite's planner
        # prefers the unique index and then reads the table row. The change feed's two (by `since`, by
        # `valid_until`) let a poll read only what changed since its cursor, not every state of the pair.
        indexes = (
            Index(fields=AUDIENCE_STATE_COLUMNS, name=AUDIENCE_STATE_INDEX),
            Index(fields=CHECK_STATE_COLUMNS, name=CHECK_STATE_INDEX),
            Index(fields=CHANGED_STATE_COLUMNS, name=CHANGED_STATE_INDEX),
            Index(fields=EXPIRING_STATE_COLUMNS, name=EXPIRING_STATE_INDEX),
        )
