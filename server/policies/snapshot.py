"""The catalogue as the consent path reads it: purposes, channels and published policy versions, frozen.

No database here: `server.policies.catalog` loads a snapshot, and the stream worker processes
(`server.consent.stream_workers`) unpickle one without importing the ORM, which keeps a worker to ~28 MB of RSS
(bench/README.md, "Stream worker processes").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

FALLBACK_LANGUAGE = "fr"
PRIVACY_POLICY = "privacy-policy"  # the document every non-cookie purpose is granted under by default


@dataclass(frozen=True)
class PurposeInfo:
    code: str
    legal_basis: str
    channels: frozenset[str]
    channel_basis: dict[str, str]
    validity_days: int | None
    double_opt_in: bool
    marketing: bool
    banner_category: str | None
    third_parties: tuple[str, ...]
    titles: dict[str, str]
    descriptions: dict[str, str]

    def basis_for(self, channel: str) -> str:
        return self.channel_basis.get(channel, self.legal_basis)


@dataclass(frozen=True)
class PolicyInfo:
    id: int
    document: str
    version: str
    lang: str
    sha256: str
    effective_at: datetime
    material: bool
    purposes: tuple[str, ...]
    title: str
    published_at: datetime | None = None  # when `policies sync` stored it (it may come into force earlier)

    @property
    def visible_from(self) -> datetime:
        """From when a reader can know this version is in force: its `effective_at`, or its publication when it was
        published back-dated. The audience change feed reports a material version from then on."""
        if self.published_at is None or self.published_at <= self.effective_at:
            return self.effective_at
        return self.published_at

    @property
    def label(self) -> str:
        return f"{self.document}/{self.version}/{self.lang}"

    @property
    def reference(self) -> dict[str, str]:
        """The `policy` object of a hashed event body: which text the person saw, by id and content hash."""
        return {"document": self.document, "version": self.version, "lang": self.lang, "sha256": self.sha256}


@dataclass(frozen=True)
class CatalogSnapshot:
    purposes: dict[str, PurposeInfo]
    channels: frozenset[str]
    policies: dict[str, PolicyInfo]
    policies_by_id: dict[int, PolicyInfo]
    materials: tuple[PolicyInfo, ...]

    def in_force(self, document: str, lang: str, at: datetime) -> PolicyInfo | None:
        """The version of `document` in force at `at` for a reader of `lang`, the one rule every touchpoint shows
        and cites: the newest version in `lang` whose `effective_at` has come (by `effective_at`, then version
        number); where `lang` has none in force, the same in FALLBACK_LANGUAGE (the controller's, whose texts are
        published first); None when neither has a version in force yet."""
        for language in (lang, FALLBACK_LANGUAGE):
            versions = [
                p
                for p in self.policies.values()
                if p.document == document and p.lang == language and p.effective_at <= at
            ]
            if versions:
                return max(versions, key=_publication_order)
        return None

    def reconsent_required(self, purpose: str, granted_under: PolicyInfo, since: datetime, at: datetime) -> bool:
        """Invariant 7 (docs/design.md): a material version listing `purpose`, in force at `at`, newer than the
        grant."""
        for material in self.materials:
            if purpose not in material.purposes or material.effective_at > at:
                continue
            if material.document == granted_under.document:
                if material.effective_at > granted_under.effective_at:
                    return True
            elif material.effective_at > since:
                return True
        return False

    def reconsent_rules(self, purpose: str, at: datetime) -> dict[int, tuple[bool, datetime | None]]:
        """`reconsent_required` precomputed per granting policy, for one purpose and instant, so that a row costs a
        dict lookup: (stale for good: a newer material version of the same document is in force, stale when granted
        before this instant: the latest material version of another document in force)."""
        rules: dict[int, tuple[bool, datetime | None]] = {}
        for policy_id, policy in self.policies_by_id.items():
            same_document = False
            threshold: datetime | None = None
            for material in self.materials:
                if purpose not in material.purposes or material.effective_at > at:
                    continue
                if material.document == policy.document:
                    same_document = same_document or material.effective_at > policy.effective_at
                elif threshold is None or material.effective_at > threshold:
                    threshold = material.effective_at
            rules[policy_id] = (same_document, threshold)
        return rules


def version_order(version: str) -> tuple[int, str]:
    """Numbered versions in number order, then named ones."""
    return (int(version), "") if version.isdigit() else (1 << 30, version)


def _publication_order(policy: PolicyInfo) -> tuple[datetime, tuple[int, str]]:
    return (policy.effective_at, version_order(policy.version))
