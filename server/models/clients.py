"""API clients of the OAuth2 client-credentials flow, and the counter every change to them moves."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class ApiClient(Model):
    """A machine client. The secret is 256 random bits, so a SHA-256 of it is enough (no password stretching).

    `disabled_at` is the revocation: a revoked client gets no token and its tokens are refused. After a rotation the
    previous secret's hash is kept until `previous_secret_until` (the overlap in which both work). A token carries
    the client's `token_generation` at issue; moving it on refuses every token issued before."""

    client_id = fields.CharField(max_length=64, primary_key=True)
    name = fields.CharField(max_length=128)
    secret_sha256 = fields.CharField(max_length=64)
    scopes = fields.CharField(max_length=255)
    created_at = fields.DatetimeField(auto_now_add=True)
    disabled_at = fields.DatetimeField(null=True)
    token_generation = fields.IntField(default=0, db_default=0)
    secret_rotated_at = fields.DatetimeField(null=True)
    previous_secret_sha256 = fields.CharField(max_length=64, null=True)
    previous_secret_until = fields.DatetimeField(null=True)

    class Meta:
        table = "api_clients"


class ApiClientsVersion(Model):
    """One row (`id` 1) whose `version` moves on in the transaction of every change to `api_clients`: each server
    process polls it (a primary-key read) and reloads its view of the clients when it moved."""

    id = fields.IntField(primary_key=True)
    version = fields.BigIntField(default=0)

    class Meta:
        table = "api_clients_version"
