"""Staff sign-in throttles: failures counted per account and per network, each with its lockout."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class SignInThrottle(Model):
    """One counter: `account:<id>` or `network:<CIDR>` (the client's address cut to /24 or /48). Times are Unix
    seconds so that the one UPDATE that counts an attempt compares them alike on SQLite and PostgreSQL
    (`server.staff.throttle`)."""

    key = fields.CharField(max_length=80, primary_key=True)
    failures = fields.IntField(default=0)
    window_start = fields.FloatField()
    locked_until = fields.FloatField(null=True)

    class Meta:
        table = "sign_in_throttles"
