"""The decision rule behind every consent answer, as one pure function.

Default deny (invariant 6, docs/design.md): only `granted`, `soft_opt_in`, `legitimate_interest` and `necessary` allow.
Expiry and re-consent after a material policy version are decided here, at read time, so no background job has to
run for them to take effect.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from server.policies.snapshot import CatalogSnapshot

REASONS = (
    "granted",
    "soft_opt_in",
    "legitimate_interest",
    "necessary",
    "no_record",
    "refused",
    "withdrawn",
    "expired",
    "pending_confirmation",
    "reconsent_required",
    "objected",
    "erased",
    "restricted",
    "unknown_subject",
)


class SubjectFlags(NamedTuple):
    erased_at: datetime | None = None
    restricted_at: datetime | None = None


class StateView(NamedTuple):
    """The state of one subject x purpose x channel, from the projection or from a replay."""

    status: str
    since: datetime
    valid_until: datetime | None
    policy_version_id: int
    event_id: str


class Answer(NamedTuple):
    allowed: bool
    reason: str
    status: str
    since: datetime | None = None
    valid_until: datetime | None = None
    policy_version: str | None = None
    event_id: str | None = None


UNKNOWN_SUBJECT = Answer(False, "unknown_subject", "no_record")


def decide(
    catalog: CatalogSnapshot,
    subject: SubjectFlags | None,
    state: StateView | None,
    purpose: str,
    channel: str,
    at: datetime,
) -> Answer:
    if subject is None:
        return UNKNOWN_SUBJECT
    if subject.erased_at is not None and subject.erased_at <= at:
        return Answer(False, "erased", "erased", since=subject.erased_at)
    if subject.restricted_at is not None and subject.restricted_at <= at:
        # GDPR 18: processing restricted until lifted.
        return Answer(False, "restricted", state.status if state else "no_record", since=subject.restricted_at)
    info = catalog.purposes.get(purpose)
    if state is None:
        basis = info.basis_for(channel) if info else "consent"
        if basis == "legitimate_interest":
            return Answer(True, "legitimate_interest", "no_record")
        if basis == "necessary":
            return Answer(True, "necessary", "no_record")
        return Answer(False, "no_record", "no_record")
    policy = catalog.policies_by_id.get(state.policy_version_id)
    status = state.status

    def answer(allowed: bool, reason: str) -> Answer:
        label = policy.label if policy else None
        return Answer(allowed, reason, status, state.since, state.valid_until, label, state.event_id)

    if status in ("granted", "soft_opt_in"):
        if state.valid_until is not None and at >= state.valid_until:
            return answer(False, "expired")
        if status == "granted" and policy is not None and catalog.reconsent_required(purpose, policy, state.since, at):
            return answer(False, "reconsent_required")
        return answer(True, status)
    reason = {
        "refused": "refused",
        "withdrawn": "withdrawn",
        "expired": "expired",
        "pending_confirmation": "pending_confirmation",
        "objected": "objected",
    }.get(status, "no_record")
    return answer(False, reason)
