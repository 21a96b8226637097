"""Idempotency keys: the answer a keyed write gave, kept so that the same request sent again is answered again
instead of being carried out twice (IETF httpapi draft "The Idempotency-Key HTTP Header Field")."""

from __future__ import annotations

from tortoise import fields
from tortoise.indexes import Index
from tortoise.models import Model


class IdempotencyKey(Model):
    """One key of one client and the response its write answered.

    Inserted in the write's own transaction together with the response, so a key exists exactly when its write
    committed (server.kernel.idempotency)."""

    # SHA-256 of the client's scope and the key: neither the client id nor the key is needed to find the row.
    id = fields.CharField(primary_key=True, max_length=64)
    # SHA-256 of the method, the path with its query and the body: the same key with another request is refused.
    fingerprint = fields.CharField(max_length=64)
    status = fields.IntField()
    headers: list[list[str]] = fields.JSONField(default=list)
    body = fields.BinaryField()
    created_at = fields.DatetimeField()
    expires_at = fields.DatetimeField()
    # The pseudonym (`subjects.pseudonym`) of the subject the write named, so an erasure deletes the answers that
    # name the person (GDPR 17); the ledger keeps the pseudonym after erasure, so it tells nothing more.
    subject = fields.CharField(max_length=64, null=True)

    class Meta:
        table = "idempotency_keys"
        # The sweep deletes by expiry, an erasure by subject.
        indexes = (
            Index(fields=("expires_at",), name="idempotency_keys_expiry"),
            Index(fields=("subject",), name="idempotency_keys_by_subject"),
        )
