"""Tables behind consent proof: receipts, the transparency log (queue, leaves, Merkle nodes, checkpoints) and the
access log."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tortoise import fields
from tortoise.indexes import Index
from tortoise.models import Model

if TYPE_CHECKING:
    from server.models.ledger import ConsentEvent
    from server.models.subjects import Subject


class Receipt(Model):
    """A signed Kantara-style consent receipt (compact JWS) for the decisions of one record call.

    Written in the same transaction as its events and handed back unchanged in every proof bundle.
    """

    id = fields.UUIDField(primary_key=True)
    subject: fields.ForeignKeyRelation[Subject] = fields.ForeignKeyField(
        "models.Subject", related_name="receipts", on_delete=fields.RESTRICT
    )
    event_ids: list[str] = fields.JSONField(default=list)
    jws = fields.TextField()
    created_at = fields.DatetimeField()

    class Meta:
        table = "receipts"
        # A subject's receipts (proof bundles, the desk's export): without it, a scan of every receipt, and one
        # more for every change of the subject row under a foreign-key check.
        indexes = (Index(fields=("subject_id", "created_at"), name="receipts_by_subject"),)


class LogQueue(Model):
    """Events committed but not yet given a log position. The sequencer drains it in commit order.

    `event_hash` is a copy of the event's hash, written in the recording transaction, so the sequencer reads the
    queue alone instead of looking up every event by its random UUID.

    `event_id` has no unique index: the queue is drained a million rows at a time on a first checkpoint, and
    deleting from an index on random UUIDs would be its costliest step (bench/README.md, "Where a first
    checkpoint's time goes"). An event is queued once, by the transaction that inserts it; `log_entries.event_id`
    is unique, and `ledger verify` counts queued plus logged against the events.
    """

    id = fields.BigIntField(primary_key=True)
    event: fields.ForeignKeyRelation[ConsentEvent] = fields.ForeignKeyField(
        "models.ConsentEvent", related_name="queued", on_delete=fields.RESTRICT
    )
    event_hash = fields.CharField(max_length=64)

    class Meta:
        table = "log_queue"


class LogEntry(Model):
    """A leaf of the transparency log: position -> event, with the RFC 6962 leaf hash of the event hash.

    The position is the key (no surrogate id and its index). `event_id` is unique but carries no foreign-key
    constraint: it is copied from `log_queue`, whose constraint checked it when the event was recorded, and events
    are never deleted (append-only triggers), so a second check per row would only slow the sequencer.
    """

    position = fields.BigIntField(primary_key=True, generated=False)
    event: fields.OneToOneRelation[ConsentEvent] = fields.OneToOneField(
        "models.ConsentEvent", related_name="log_entry", on_delete=fields.RESTRICT, db_constraint=False
    )
    leaf_hash = fields.CharField(max_length=64)

    class Meta:
        table = "log_entries"


class MerkleNode(Model):
    """The hash of a perfect subtree: `level` L covers leaves [index * 2^L, (index + 1) * 2^L)."""

    # Only levels >= 4 (`server.proof.log.STORED_FROM_LEVEL`) are stored: level 0 (the leaves) is
    # log_entries.leaf_hash, and levels 1-3 are hashed from at most 8 leaves when a proof needs them.

    id = fields.BigIntField(primary_key=True)
    level = fields.SmallIntField()
    index = fields.BigIntField()
    hash = fields.CharField(max_length=64)

    class Meta:
        table = "merkle_nodes"
        unique_together = (("level", "index"),)


class Checkpoint(Model):
    """A signed statement of the whole log: tree size, Merkle root, time (RFC 6962 signed tree head style)."""

    id = fields.BigIntField(primary_key=True)
    tree_size = fields.BigIntField(unique=True)
    root_hash = fields.CharField(max_length=64)
    timestamp = fields.DatetimeField()
    jws = fields.TextField()

    class Meta:
        table = "checkpoints"


class LogIdentity(Model):
    """The transparency log's id, the `log_id` every checkpoint signs, fixed when the log is created.

    Stored at the first start of a database and never derived again, so a later change of `PUBLIC_URL` leaves every
    checkpoint and proof valid (`server.proof.log.TransparencyLog.identity`). One row, `id` 1.

    `source` says where the id came from: `public_url` (a new log: the PUBLIC_URL of its first start) or
    `checkpoints` (a log that had signed checkpoints before the id was stored: the id of its first checkpoint).
    `adopted_at` is when it was stored; `ledger verify` reads checkpoints signed before then for another id as
    the history of an older release, which derived the id from PUBLIC_URL at run time."""

    id = fields.SmallIntField(primary_key=True, generated=False)
    log_id = fields.CharField(max_length=2048)
    source = fields.CharField(max_length=16)
    adopted_at = fields.DatetimeField()

    class Meta:
        table = "log_identity"


class AccessLog(Model):
    """Who read or exported what, when (GDPR 5(2), 32): proofs, exports and history reads by staff or clients."""

    id = fields.BigIntField(primary_key=True)
    at = fields.DatetimeField()
    actor_type = fields.CharField(max_length=16)
    actor_id = fields.CharField(max_length=128)
    action = fields.CharField(max_length=32)
    subject: fields.ForeignKeyNullableRelation[Subject] = fields.ForeignKeyField(
        "models.Subject", related_name="access_log", on_delete=fields.RESTRICT, null=True
    )
    detail: dict[str, Any] = fields.JSONField(default=dict)

    class Meta:
        table = "access_log"
        indexes = (("subject_id", "at"),)
