"""Subjects: the people whose consent is recorded."""

from __future__ import annotations

from tortoise import fields
from tortoise.indexes import Index
from tortoise.models import Model

from server.indexes import CHECK_SUBJECT_COLUMNS, CHECK_SUBJECT_INDEX

AUDIENCE_SUBJECT_INDEX = "subjects_audience_by_id"
AUDIENCE_SUBJECT_COLUMNS = ("id", "ref", "erased_at", "restricted_at")
FLAGS_CHANGED_INDEX = "subjects_flags_changed"
CREATED_INDEX = "subjects_created"


class Subject(Model):
    """A person, known by the company's own `ref`.

    The ledger only ever names the `pseudonym` (HMAC-SHA256 of the ref under the server secret). Contact points are
    kept here, apart from the ledger, so that erasure (GDPR 17) can blank them without touching any event.
    `last_seq` / `head_hash` are the head of the subject's hash chain: the row is locked while appending, which
    serialises writers on one subject (invariant 3, docs/design.md).

    `flags_changed_at` is when `erased_at` or `restricted_at` last changed, lifting a restriction included (which
    leaves no other trace here), or when `ledger repair` rewrote the subject's states (server.ledger.repair): the
    audience change feed finds those subjects by it, their answers changed without a new decision
    (`server.visibility`).
    """

    id = fields.UUIDField(primary_key=True)
    ref = fields.CharField(max_length=255, unique=True)
    pseudonym = fields.CharField(max_length=64, unique=True)
    email = fields.CharField(max_length=320, null=True)
    phone = fields.CharField(max_length=32, null=True)
    locale = fields.CharField(max_length=16, null=True)
    last_seq = fields.IntField(default=0, db_default=0)
    head_hash = fields.CharField(max_length=64, default="0" * 64)
    created_at = fields.DatetimeField(auto_now_add=True)
    erased_at = fields.DatetimeField(null=True)
    restricted_at = fields.DatetimeField(null=True)
    flags_changed_at = fields.DatetimeField(null=True)

    class Meta:
        table = "subjects"
        # Cover the consent-check read of a subject by ref (its id and the two flags a check needs) and the audience
        # export's read by id (its ref and the two flags); named for the SQLite readers' INDEXED BY, like
        # ConsentState's. Neither holds `last_seq` or `head_hash`, so appending a decision does not write them.
        # The change feed's: subjects erased, restricted or lifted after an instant, and subjects created after one.
        indexes = (
            Index(fields=CHECK_SUBJECT_COLUMNS, name=CHECK_SUBJECT_INDEX),
            Index(fields=AUDIENCE_SUBJECT_COLUMNS, name=AUDIENCE_SUBJECT_INDEX),
            Index(fields=("flags_changed_at",), name=FLAGS_CHANGED_INDEX),
            Index(fields=("created_at",), name=CREATED_INDEX),
        )


class FormerContact(Model):
    """A keyed hash of an email address or phone number a subject had before it was replaced.

    HMAC-SHA256 under the server secret, as a `Suppression`; the address itself is not kept. Written when a
    rectification or the contact API replaces an address, so that an erasure suppresses every address the person
    ever had, not only the last one (GDPR 17, 21(3)): at erasure the digests go to the suppression list, unlinked
    from the subject, and these rows are deleted."""

    id = fields.IntField(primary_key=True)
    subject: fields.ForeignKeyRelation[Subject] = fields.ForeignKeyField(
        "models.Subject", related_name="former_contacts", on_delete=fields.RESTRICT
    )
    kind = fields.CharField(max_length=8)
    digest = fields.CharField(max_length=64)
    replaced_at = fields.DatetimeField()

    class Meta:
        table = "former_contacts"
        unique_together = (("subject_id", "digest"),)
