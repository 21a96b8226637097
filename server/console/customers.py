"""What the console shows about a customer: search, the consent matrix, the timeline of every event, and the
script an agent reads before recording a decision (stored as the decision's UI snapshot, GDPR 7(1))."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tortoise.expressions import Q

from server.consent.decide import Answer, SubjectFlags
from server.consent.matrix import decide_all, projected_states
from server.db import column_length
from server.errors import InvalidRequest, NotFound
from server.ledger.append import Snapshot
from server.models import ConsentEvent, Subject
from server.policies.snapshot import CatalogSnapshot, PolicyInfo

if TYPE_CHECKING:
    from server.console.desk import Desk

CHANNEL_PHRASES = {
    "en": {
        "email": "by email",
        "sms": "by text message",
        "phone": "by phone",
        "post": "by post",
        "push": "by push notification",
        "web": "on our website",
    },
    "fr": {
        "email": "par e-mail",
        "sms": "par SMS",
        "phone": "par téléphone",
        "post": "par courrier",
        "push": "par notification",
        "web": "sur notre site",
    },
}
AGENT_ACTIONS = ("grant", "deny", "withdraw", "object")
AGENT_METHODS = ("phone_call", "ticket", "in_person", "letter")
_DIGITS = re.compile(r"\D")


async def search(query: str, limit: int = 20) -> list[Subject]:
    """Customers whose ref or email starts with the query, or whose phone contains its digits."""
    text = query.strip()
    if len(text) < 2:
        return []
    condition = Q(ref__istartswith=text) | Q(email__istartswith=text)
    digits = _DIGITS.sub("", text)
    if len(digits) >= 4 and not any(ch.isalpha() for ch in text):
        condition |= Q(phone__contains=digits[-9:])
    return list(await Subject.filter(condition).order_by("ref").limit(limit))


def query_kind(query: str) -> str:
    """What was searched, for the access log (never the query itself: it may be an email address)."""
    text = query.strip()
    if "@" in text:
        return "email"
    if len(_DIGITS.sub("", text)) >= 4 and not any(ch.isalpha() for ch in text):
        return "phone"
    return "ref"


async def get_subject(ref: str) -> Subject:
    # A ref longer than the column is no customer (the ORM would refuse the query itself: a 500).
    subject = await Subject.get_or_none(ref=ref) if 0 < len(ref) <= column_length(Subject, "ref") else None
    if subject is None:
        raise NotFound("no customer with this ref", parameter="ref")
    return subject


@dataclass(frozen=True)
class MatrixRow:
    purpose: str
    title: str
    channel: str
    basis: str
    marketing: bool
    answer: Answer


async def matrix(desk: Desk, ref: str, lang: str = "en") -> list[MatrixRow]:
    """The subject's consent matrix (`server.consent.matrix`) without the purposes necessary to the service."""
    catalog = await desk.services.catalog.get()
    subject = await Subject.get_or_none(ref=ref)
    if subject is None:
        flags, states = None, {}
    else:
        flags, states = SubjectFlags(subject.erased_at, subject.restricted_at), await projected_states(subject.id)
    rows = []
    for code, channel, answer in decide_all(catalog, flags, states, desk.now()):
        purpose = catalog.purposes[code]
        if purpose.legal_basis == "necessary":
            continue
        rows.append(
            MatrixRow(
                purpose=code,
                title=purpose.titles.get(lang) or purpose.titles.get("en") or code,
                channel=channel,
                basis=purpose.basis_for(channel),
                marketing=purpose.marketing,
                answer=answer,
            )
        )
    return rows


async def timeline(subject: Subject, catalog: CatalogSnapshot, limit: int = 1000) -> list[dict[str, Any]]:
    """Every event, newest first, with the policy version (and its URL) and the UI snapshot it cites."""
    rows = await ConsentEvent.filter(subject_id=subject.id).order_by("-seq").limit(limit).values()
    out = []
    for row in rows:
        policy = catalog.policies_by_id.get(row["policy_version_id"])
        out.append(
            {
                **row,
                "policy_label": policy.label if policy else str(row["policy_version_id"]),
                "policy_url": f"/policies/{policy.document}/{policy.version}/{policy.lang}" if policy else None,
            }
        )
    return out


def script_for(
    desk: Desk, catalog: CatalogSnapshot, *, purpose: str, channel: str, action: str, policy: PolicyInfo, lang: str
) -> Snapshot:
    """The approved script for this decision, filled in: what the agent reads, and what is stored as proof."""
    if action not in AGENT_ACTIONS:
        raise InvalidRequest(f"action {action!r} is not one of {', '.join(AGENT_ACTIONS)}", parameter="action")
    info = catalog.purposes.get(purpose)
    if info is None or channel not in info.channels:
        raise InvalidRequest(f"{purpose}/{channel} is not a purpose offered on that channel", parameter="target")
    lang = lang if lang in CHANNEL_PHRASES else "fr"
    answer = desk.answers.script(action, lang)
    if answer is None:
        raise NotFound(f"no approved script for {action!r} in {lang}", parameter="action")
    text = answer.fill(
        {
            "controller": desk.controller.name,
            "purpose": info.titles.get(lang) or purpose,
            "channel": CHANNEL_PHRASES[lang][channel],
            "policy_title": policy.title,
            "policy_version": policy.version,
            "policy_url": desk.url(f"/policies/{policy.document}/{policy.version}/{policy.lang}"),
            "dpo_email": desk.controller.email,
        }
    )
    header = f"[{answer.id} v{answer.version} {lang}]\n"
    return Snapshot("agent_script", header + text, "text/plain; charset=utf-8")


def policy_choices(catalog: CatalogSnapshot, now: datetime) -> list[PolicyInfo]:
    """Published privacy-policy versions already in force, newest first (the agent picks the one read out)."""
    versions = [p for p in catalog.policies.values() if p.document == "privacy-policy" and p.effective_at <= now]
    return sorted(versions, key=lambda p: (p.effective_at, p.lang), reverse=True)
