"""The record of processing activities (GDPR 30(1)), built from what the service knows and what is declared.

What the service knows: the controller and its contact point, each purpose of the catalogue with its legal basis
per channel, how long a consent stays valid, the third-party controllers it names, and the recipients registered
for its withdrawals (GDPR 19). What only the company can say is declared in `policy_docs/purposes.yaml`, reviewed
like the rest of it: per purpose, under `record:`, the categories of people and of personal data, the retention
and the transfers outside the EU; at the top, under `record:`, the security measures (30(1)(g)), a representative
(27) if any, default transfers, and processing activities that are not purposes of the catalogue.

Nothing is invented: an item not declared is listed under `gaps`, and `transfers: []` (declared: none) is told
apart from no `transfers` at all (not said).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from server import markdown
from server.errors import InvalidRequest
from server.models import Recipient
from server.policies.controller import Controller, load_controller
from server.policies.documents import PolicySourceError, load_tree

BASES = {
    "consent": "consent (GDPR 6(1)(a))",
    "soft_opt_in": "existing customer, similar products (ePrivacy 13(2), GDPR 6(1)(f))",
    "legitimate_interest": "legitimate interest (GDPR 6(1)(f))",
    "necessary": "strictly necessary (ePrivacy 5(3))",
}


class RecordDeclarationError(InvalidRequest):
    """`purposes.yaml` declares the record in a form the builder cannot read; the message says where."""

    slug = "record-declaration"
    title = "The record of processing is not declared correctly"


@dataclass(frozen=True)
class Transfer:
    recipient: str
    country: str
    safeguard: str  # GDPR 45-49: adequacy decision, standard contractual clauses, ...


@dataclass
class Activity:
    """One processing activity: a purpose of the catalogue, or one declared apart."""

    name: str
    code: str | None
    description: str
    legal_basis: list[str]
    subject_categories: list[str] | None
    data_categories: list[str] | None
    recipients: list[str]
    transfers: list[Transfer] | None
    retention: str | None
    facts: list[str] = field(default_factory=list)  # what the service itself enforces (consent validity, ...)


@dataclass
class ProcessingRecord:
    controller: Controller
    representative: str | None
    security_measures: list[str] | None
    activities: list[Activity]
    generated_at: datetime
    gaps: list[str]

    def as_json(self) -> dict[str, Any]:
        def transfers(items: list[Transfer] | None) -> list[dict[str, str]] | None:
            return None if items is None else [t.__dict__ for t in items]

        c = self.controller
        return {
            "controller": {"name": c.name, "address": c.address, "email": c.email, "phone": c.phone, "url": c.url},
            "contact_point": {"name": c.contact, "email": c.email, "phone": c.phone},
            "representative": self.representative,
            "security_measures": self.security_measures,
            "activities": [{**a.__dict__, "transfers": transfers(a.transfers)} for a in self.activities],
            "generated_at": self.generated_at.isoformat().replace("+00:00", "Z"),
            "gaps": self.gaps,
        }


def _strings(value: Any, where: str) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) and item.strip() for item in value):
        raise RecordDeclarationError(f"purposes.yaml: {where} must be a list of texts")
    return [item.strip() for item in value]


def _text(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise RecordDeclarationError(f"purposes.yaml: {where} must be a text")
    return value.strip()


def _transfers(value: Any, where: str) -> list[Transfer] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise RecordDeclarationError(f"purposes.yaml: {where} must be a list (empty when there are none)")
    found = []
    for item in value:
        if not isinstance(item, dict) or {"recipient", "country", "safeguard"} - set(item):
            raise RecordDeclarationError(f"purposes.yaml: each of {where} needs recipient, country and safeguard")
        texts = [_text(item[key], f"{where}.{key}") for key in ("recipient", "country", "safeguard")]
        if None in texts:
            raise RecordDeclarationError(f"purposes.yaml: each of {where} needs recipient, country and safeguard")
        found.append(Transfer(*(str(text) for text in texts)))
    return found


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RecordDeclarationError(f"purposes.yaml: {where} must be a mapping")
    return value


def _own_or(own: list[Transfer] | None, default: list[Transfer] | None) -> list[Transfer] | None:
    """An activity's own transfers when declared (an empty list included), else the default ones."""
    return own if own is not None else default


async def build_record(policy_dir: Path, now: datetime) -> ProcessingRecord:
    """The record as it stands: declarations read now, recipients as registered now (those disabled since are
    still listed: 30(1)(d) covers recipients the data "have been" disclosed to).

    Empty lists: `transfers: []` and `recipients: []` say "none"; categories of people or data, a legal basis and
    security measures cannot be none, so an empty list is listed as not declared."""
    try:
        tree = yaml.safe_load((policy_dir / "purposes.yaml").read_text(encoding="utf-8")) or {}
        catalogue = load_tree(policy_dir).purposes  # the purposes as `policies sync` validates them
    except (OSError, yaml.YAMLError, PolicySourceError, AttributeError, TypeError, ValueError) as exc:
        raise RecordDeclarationError(f"purposes.yaml cannot be read: {exc}") from None
    top = _mapping(tree.get("record") if isinstance(tree, dict) else None, "record")
    raw_purposes = {str(p.get("code")): p for p in (tree.get("purposes") or []) if isinstance(p, dict)}
    default_transfers = _transfers(top.get("transfers"), "record.transfers")
    recipients = await Recipient.all().order_by("name").values("name", "purposes", "disabled_at")
    gaps: list[str] = []
    activities = []
    for purpose in catalogue:
        code = purpose.code
        declared = _mapping(raw_purposes.get(code, {}).get("record"), f"purpose {code}: record")
        bases = [f"{BASES.get(purpose.legal_basis, purpose.legal_basis)} on {', '.join(purpose.channels)}"]
        for channel, basis in purpose.channel_basis.items():
            bases.append(f"{BASES.get(basis, basis)} on {channel} (instead)")
        facts = []
        if purpose.validity_days:
            facts.append(f"a consent is valid {purpose.validity_days} days, then asked again")
        if purpose.double_opt_in:
            facts.append("email consent counts once confirmed by a link (double opt-in)")
        if purpose.marketing:
            facts.append("direct marketing: an objection stops it at once, on every channel (GDPR 21(3))")
        told = [
            f"{r['name']} (receives its data; told of withdrawals, GDPR 19)"
            + (f" (no longer, since {r['disabled_at']:%Y-%m-%d})" if r["disabled_at"] else "")
            for r in recipients
            if not r["purposes"] or code in r["purposes"]
        ]
        activities.append(
            Activity(
                name=purpose.titles.get("en") or code,
                code=code,
                description=purpose.descriptions.get("en", ""),
                legal_basis=bases,
                subject_categories=_strings(declared.get("subject_categories"), f"purpose {code}: subject_categories"),
                data_categories=_strings(declared.get("data_categories"), f"purpose {code}: data_categories"),
                recipients=[f"{name} (third-party controller)" for name in purpose.third_parties]
                + (_strings(declared.get("recipients"), f"purpose {code}: recipients") or [])
                + told,
                transfers=_own_or(
                    _transfers(declared.get("transfers"), f"purpose {code}: transfers"), default_transfers
                ),
                retention=_text(declared.get("retention"), f"purpose {code}: retention"),
                facts=facts,
            )
        )
    others = top.get("activities") or []
    if not isinstance(others, list):
        raise RecordDeclarationError("purposes.yaml: record.activities must be a list")
    for index, raw in enumerate(others):
        other = _mapping(raw, f"record.activities[{index}]")
        name = _text(other.get("name"), f"record.activities[{index}].name") or f"activity {index + 1}"
        declared_recipients = _strings(other.get("recipients"), f"{name}: recipients")
        if declared_recipients is None:
            gaps.append(f"{name}: recipients, or none (30(1)(d)) not declared")
        activity = Activity(
            name=name,
            code=None,
            description=_text(other.get("description"), f"{name}: description") or "",
            legal_basis=_strings(other.get("legal_basis"), f"{name}: legal_basis") or [],
            subject_categories=_strings(other.get("subject_categories"), f"{name}: subject_categories"),
            data_categories=_strings(other.get("data_categories"), f"{name}: data_categories"),
            recipients=declared_recipients or [],
            transfers=_own_or(_transfers(other.get("transfers"), f"{name}: transfers"), default_transfers),
            retention=_text(other.get("retention"), f"{name}: retention"),
        )
        if not activity.description:
            gaps.append(f"{name}: its purpose (30(1)(b)) not described")
        activities.append(activity)
    for activity in activities:
        label = f"{activity.name}" + (f" ({activity.code})" if activity.code else "")
        for item, value in (
            ("categories of people (30(1)(c))", activity.subject_categories),
            ("categories of personal data (30(1)(c))", activity.data_categories),
            ("transfers outside the EU, or none (30(1)(e))", activity.transfers),
            ("time limits for erasure (30(1)(f))", activity.retention),
        ):
            if value is None or (value == [] and "categories" in item):
                gaps.append(f"{label}: {item} not declared")
        if not activity.legal_basis:
            gaps.append(f"{label}: legal basis not declared")
    security = _strings(top.get("security_measures"), "record.security_measures")
    if not security:
        gaps.append("security measures (30(1)(g)) not declared")
    controller = load_controller(policy_dir)
    for value, what in (
        (controller.name, "the controller's name"),
        (controller.address, "the controller's address"),
        (controller.email, "the controller's email"),
        (controller.contact, "the contact point or data protection officer"),
    ):
        if not value:
            gaps.append(f"{what} (30(1)(a)) not declared")
    return ProcessingRecord(
        controller=controller,
        representative=_text(top.get("representative"), "record.representative"),
        security_measures=security,
        activities=activities,
        generated_at=now,
        gaps=gaps,
    )


_TEMPLATES = Path(__file__).resolve().parent / "templates"


def render_markdown(record: ProcessingRecord) -> str:
    """The record as a Markdown document (console download and `python -m server record`)."""
    # Markdown, not HTML: HTML escaping would garble it; `md` escapes what Markdown would act on.
    environment = Environment(  # noqa: S701
        loader=FileSystemLoader(_TEMPLATES), undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True
    )
    environment.filters.update(md=markdown.md, md_block=markdown.md_block, quoted=markdown.quoted)
    return environment.get_template("processing_record.md").render(r=record)
