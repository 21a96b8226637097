"""Leases on background jobs: which server process runs each job now (server.leases)."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class Lease(Model):
    """One background job's lease: the process holding it runs the job until `expires_at`.

    The holder renews it well before then. Times are the database's clock (seconds since the epoch), the one clock
    every process shares."""

    name = fields.CharField(max_length=64, primary_key=True)
    holder = fields.CharField(max_length=128, default="")
    # Counts the hands the lease has passed through: a holder that sees another term has lost it.
    term = fields.BigIntField(default=0)
    expires_at = fields.FloatField(default=0.0)

    class Meta:
        table = "leases"
