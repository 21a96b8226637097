"""The catalogue synced from `policy_docs/`: channels, purposes and published policy versions."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class Channel(Model):
    """A contact channel: email, sms, phone, post, push, web."""

    code = fields.CharField(max_length=16, primary_key=True)

    class Meta:
        table = "channels"


class Purpose(Model):
    """Why data is processed, as declared in `policy_docs/purposes.yaml`.

    `legal_basis` applies to every channel unless `channel_basis` overrides it for one (French law makes post and
    phone prospecting opt-out, for instance).
    """

    code = fields.CharField(max_length=64, primary_key=True)
    legal_basis = fields.CharField(max_length=32)
    channel_basis: dict[str, str] = fields.JSONField(default=dict)
    channels: list[str] = fields.JSONField(default=list)
    validity_days = fields.IntField(null=True)
    double_opt_in = fields.BooleanField(default=False)
    marketing = fields.BooleanField(default=False)
    banner_category = fields.CharField(max_length=16, null=True)
    third_parties: list[str] = fields.JSONField(default=list)
    titles: dict[str, str] = fields.JSONField(default=dict)
    descriptions: dict[str, str] = fields.JSONField(default=dict)

    class Meta:
        table = "purposes"


class PurposeBasisChange(Model):
    """A change `policies sync` made to an existing purpose's legal basis, per-channel basis or channels, with the
    declaration as it became: append-only. Such a change can flip the answer of every subject who never decided on
    the purpose (legitimate interest becoming consent, say), so the audience change feed reports every subject of
    the purpose's pairs once after it."""

    id = fields.IntField(primary_key=True)
    purpose: fields.ForeignKeyRelation[Purpose] = fields.ForeignKeyField(
        "models.Purpose", related_name="basis_changes", on_delete=fields.RESTRICT
    )
    legal_basis = fields.CharField(max_length=32)
    channel_basis: dict[str, str] = fields.JSONField(default=dict)
    channels: list[str] = fields.JSONField(default=list)
    changed_at = fields.DatetimeField()

    class Meta:
        table = "purpose_basis_changes"
        indexes = (("purpose_id", "changed_at"),)


class PolicyVersion(Model):
    """One immutable published text in one language, with the SHA-256 of its exact bytes.

    `material` versions put earlier grants of the purposes they list into re-consent (invariant 7, docs/design.md).
    """

    id = fields.IntField(primary_key=True)
    document = fields.CharField(max_length=64)
    version = fields.CharField(max_length=32)
    lang = fields.CharField(max_length=8)
    title = fields.CharField(max_length=255)
    effective_at = fields.DatetimeField()
    material = fields.BooleanField(default=False)
    purposes: list[str] = fields.JSONField(default=list)
    summary = fields.TextField(default="")
    sha256 = fields.CharField(max_length=64)
    content = fields.TextField()
    source_path = fields.CharField(max_length=255)
    published_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "policy_versions"
        unique_together = (("document", "version", "lang"),)

    @property
    def label(self) -> str:
        return f"{self.document}/{self.version}/{self.lang}"
