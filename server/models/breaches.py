"""The register of personal data breaches (GDPR 33(5)) and the trail of every change to it.

A breach is recorded as soon as someone is aware of it: the 72-hour clock of GDPR 33(1) runs from `aware_at`. Its
row holds the facts as they stand; each change (facts, risk, notification to the supervisory authority,
communication to the people concerned, closing) is also a `BreachEntry` with the fields' old and new values, so
the register shows what was known when. The database refuses UPDATE and DELETE on the trail
(`server.ledger.append_only`). No personal data: counts and categories, never names or addresses.
"""

from __future__ import annotations

from typing import Any

from tortoise import fields
from tortoise.models import Model


class Breach(Model):
    """One personal data breach, its assessment and what was done about it (GDPR 33 and 34)."""

    id = fields.IntField(primary_key=True)
    title = fields.CharField(max_length=200)
    aware_at = fields.DatetimeField()  # when the controller became aware: GDPR 33(1)'s 72 hours run from here
    occurred_from = fields.DatetimeField(null=True)
    occurred_until = fields.DatetimeField(null=True)
    kinds: list[str] = fields.JSONField(default=list)  # confidentiality, integrity, availability
    description = fields.TextField(default="")  # the nature of the breach, 33(3)(a)
    data_categories = fields.TextField(default="")
    subject_categories = fields.TextField(default="")
    subjects_estimate = fields.IntField(null=True)  # approximate number of people concerned
    records_estimate = fields.IntField(null=True)  # approximate number of records concerned
    consequences = fields.TextField(default="")  # likely consequences, 33(3)(c)
    measures = fields.TextField(default="")  # measures taken or proposed, 33(3)(d)
    risk = fields.CharField(max_length=16, default="unassessed")  # unassessed, unlikely, risk, high
    authority_notified_at = fields.DatetimeField(null=True)
    authority_reference = fields.CharField(max_length=128, default="")
    late_reason = fields.TextField(default="")  # reasons for a notification after 72 hours, 33(1)
    subjects_informed_at = fields.DatetimeField(null=True)  # communication to the people concerned, 34
    no_communication_reason = fields.TextField(default="")  # 34(3): why high risk needs no communication
    closed_at = fields.DatetimeField(null=True)
    recorded_at = fields.DatetimeField()
    recorded_by = fields.CharField(max_length=64)
    version = fields.IntField(default=1)  # moves on at every change: a form made from an older one is refused

    class Meta:
        table = "breaches"
        indexes = (("closed_at", "aware_at"),)


class BreachEntry(Model):
    """One change to a breach: who, when, what (the fields' old and new values) and why."""

    id = fields.BigIntField(primary_key=True)
    breach: fields.ForeignKeyRelation[Breach] = fields.ForeignKeyField(
        "models.Breach", related_name="entries", on_delete=fields.RESTRICT
    )
    breach_id: int
    at = fields.DatetimeField()
    actor = fields.CharField(max_length=64)
    action = fields.CharField(max_length=32)
    changes: dict[str, list[Any]] = fields.JSONField(
        default=dict
    )  # field -> [old, new], values as shown in the register
    note = fields.TextField(default="")

    class Meta:
        table = "breach_history"
        indexes = (("breach_id", "at"),)
