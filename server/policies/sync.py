"""`python -m server policies sync`: register new policy versions and purpose declarations."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tortoise.transactions import in_transaction

from server.models import Channel, PolicyVersion, Purpose, PurposeBasisChange
from server.policies.documents import PolicyTree, load_tree


class PublishedPolicyChanged(ValueError):
    """A published policy file's bytes changed; publish a new version instead."""


@dataclass(frozen=True)
class SyncReport:
    published: list[str]
    unchanged: list[str]
    purposes: list[str]


async def sync_policies(root: Path) -> SyncReport:
    """Upsert channels and purposes, insert new policy versions; refuse any change to a published text.

    Everything happens in one transaction: a refused file leaves the catalogue as it was.
    """
    tree = load_tree(root)
    async with in_transaction():
        for code in tree.channels:
            await Channel.get_or_create(code=code)
        await _upsert_purposes(tree)
        published, unchanged = [], []
        for source in tree.documents:
            existing = await PolicyVersion.get_or_none(
                document=source.document, version=source.version, lang=source.lang
            )
            if existing is not None:
                if existing.sha256 != source.sha256:
                    raise PublishedPolicyChanged(
                        f"{source.path} changed after publication: published sha256 {existing.sha256}, "
                        f"file now sha256 {source.sha256}. Published texts are immutable; "
                        "restore the file and publish a new version."
                    )
                unchanged.append(source.label)
                continue
            await PolicyVersion.create(
                document=source.document,
                version=source.version,
                lang=source.lang,
                title=source.title,
                effective_at=source.effective_at,
                material=source.material,
                purposes=list(source.purposes),
                summary=source.summary,
                sha256=source.sha256,
                content=source.content,
                source_path=str(source.path.relative_to(root)),
            )
            published.append(source.label)
    return SyncReport(published, unchanged, [p.code for p in tree.purposes])


async def _upsert_purposes(tree: PolicyTree) -> None:
    for declared in tree.purposes:
        values: dict[str, Any] = {
            "legal_basis": declared.legal_basis,
            "channel_basis": declared.channel_basis,
            "channels": list(declared.channels),
            "validity_days": declared.validity_days,
            "double_opt_in": declared.double_opt_in,
            "marketing": declared.marketing,
            "banner_category": declared.banner_category,
            "third_parties": list(declared.third_parties),
            "titles": declared.titles,
            "descriptions": declared.descriptions,
        }
        stored = await Purpose.get_or_none(code=declared.code)
        await Purpose.update_or_create(defaults=values, code=declared.code)
        declared_basis = _basis(values["legal_basis"], values["channel_basis"], values["channels"])
        if stored is not None and _basis(stored.legal_basis, stored.channel_basis, stored.channels) != declared_basis:
            await PurposeBasisChange.create(
                purpose_id=declared.code,
                legal_basis=values["legal_basis"],
                channel_basis=values["channel_basis"],
                channels=values["channels"],
                changed_at=datetime.now(UTC),
            )


def _basis(legal_basis: str, channel_basis: dict[str, str], channels: list[str]) -> tuple[Any, ...]:
    """What decides a subject's answer without a decision: the basis per channel, and the channels offered."""
    return (legal_basis, dict(channel_basis), sorted(channels))
