"""API clients of the OAuth2 client-credentials flow."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class ApiClient(Model):
    """A machine client. The secret is 256 random bits, so a SHA-256 of it is enough (no password stretching)."""

    client_id = fields.CharField(max_length=64, primary_key=True)
    name = fields.CharField(max_length=128)
    secret_sha256 = fields.CharField(max_length=64)
    scopes = fields.CharField(max_length=255)
    created_at = fields.DatetimeField(auto_now_add=True)
    disabled_at = fields.DatetimeField(null=True)

    class Meta:
        table = "api_clients"
