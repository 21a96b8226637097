"""Service desk tables: staff accounts, data-subject requests with their history, and the suppression list.

Contact data never live here: they stay on the subject row (`subjects`), which erasure blanks. A request names
its subject by foreign key, its history names staff by id, and the suppression list only holds keyed hashes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import UUID

from tortoise import fields
from tortoise.indexes import Index
from tortoise.models import Model

if TYPE_CHECKING:
    from server.models.subjects import Subject


class StaffAccount(Model):
    """A member of staff who signs in to the service desk console, with one role (GDPR 25 and 32).

    Local accounts carry an argon2 password hash, accounts from the company's OpenID Connect provider carry the
    issuer and subject they sign in as. `session_epoch` is part of every session cookie: signing out moves it on,
    which ends every session of the account at once. Failed sign-ins are counted in `sign_in_throttles`.
    """

    id = fields.IntField(primary_key=True)
    email = fields.CharField(max_length=320, unique=True)
    name = fields.CharField(max_length=128)
    role = fields.CharField(max_length=16)
    password_hash = fields.CharField(max_length=255, null=True)
    oidc_issuer = fields.CharField(max_length=255, null=True)
    oidc_subject = fields.CharField(max_length=255, null=True)
    session_epoch = fields.IntField(default=0, db_default=0)
    created_at = fields.DatetimeField(auto_now_add=True)
    last_login_at = fields.DatetimeField(null=True)
    disabled_at = fields.DatetimeField(null=True)

    class Meta:
        table = "staff_accounts"
        unique_together = (("oidc_issuer", "oidc_subject"),)


class DataSubjectRequest(Model):
    """A data-subject request (GDPR 15 to 21) and its clock: due one month after receipt (GDPR 12(3)).

    `due_on` moves once at most, by up to two months from `original_due_on`, and only with a reason that is sent
    to the person. `details` is free text from the person or the agent and is scrubbed of the subject's contact
    data when the subject is erased.
    """

    id = fields.IntField(primary_key=True)
    subject: fields.ForeignKeyRelation[Subject] = fields.ForeignKeyField(
        "models.Subject", related_name="dsr_requests", on_delete=fields.RESTRICT
    )
    kind = fields.CharField(max_length=16)
    channel = fields.CharField(max_length=32)
    received_at = fields.DatetimeField()
    original_due_on = fields.DateField()
    due_on = fields.DateField()
    extension_reason = fields.TextField(null=True)
    extended_at = fields.DatetimeField(null=True)
    status = fields.CharField(max_length=24, default="open", db_default="open")
    owner: fields.ForeignKeyNullableRelation[StaffAccount] = fields.ForeignKeyField(
        "models.StaffAccount", related_name="dsr_requests", on_delete=fields.RESTRICT, null=True
    )
    subject_id: UUID  # the foreign keys' columns, for the type checker
    owner_id: int | None
    opened_by = fields.CharField(max_length=64)
    details = fields.TextField(default="")
    outcome = fields.TextField(default="")
    closed_at = fields.DatetimeField(null=True)
    last_reminder_on = fields.DateField(null=True)

    class Meta:
        table = "dsr_requests"
        indexes = (
            ("status", "due_on"),
            # A subject's requests (the customer page, the export, erasure's scrubbing).
            Index(fields=("subject_id", "received_at"), name="dsr_requests_by_subject"),
        )


class DsrHistory(Model):
    """One change to a data-subject request: who, when, what (GDPR 5(2) accountability)."""

    id = fields.BigIntField(primary_key=True)
    request: fields.ForeignKeyRelation[DataSubjectRequest] = fields.ForeignKeyField(
        "models.DataSubjectRequest", related_name="history", on_delete=fields.RESTRICT
    )
    request_id: int
    at = fields.DatetimeField()
    actor = fields.CharField(max_length=64)
    action = fields.CharField(max_length=32)
    note = fields.TextField(default="")

    class Meta:
        table = "dsr_history"
        indexes = (("request_id", "at"),)


class Suppression(Model):
    """A keyed hash (HMAC-SHA256 under the server secret) of an erased email address or phone number.

    Kept after erasure (GDPR 17 and 21) so the person is never imported or contacted again, without keeping the
    address itself: only someone holding the secret and the address can find a match.
    """

    id = fields.IntField(primary_key=True)
    kind = fields.CharField(max_length=8)
    digest = fields.CharField(max_length=64, unique=True)
    created_at = fields.DatetimeField()

    class Meta:
        table = "suppressions"
