"""What the preference center shows for one subject: one row per purpose, one control per channel.

The state of each control comes from the same decision rule as the check API (`server.consent.decide.decide`) over
the subject's consent states, so `pending_confirmation` and `reconsent_required` show exactly when the check API
answers them. Controls per channel follow the legal basis of that purpose on that channel:

- `consent` / `soft_opt_in`: a switch (GDPR 4(11): off unless the person switched it on; no pre-ticked toggles);
- `legitimate_interest`: an "object" control (GDPR 21(2)-(3): objecting to direct marketing is absolute);
- `necessary`: shown as always on, not switchable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from server.consent.decide import Answer, StateView, SubjectFlags, decide
from server.consent.matrix import projected_states
from server.models import Subject
from server.policies.snapshot import PRIVACY_POLICY, CatalogSnapshot, PolicyInfo, PurposeInfo

CHANNEL_ORDER = ("email", "sms", "phone", "post", "push", "web")
PRIMARY_DOCUMENT = PRIVACY_POLICY  # cited for every purpose it covers; others (cookies) cite their own document
ON_STATUSES = frozenset({"granted", "pending_confirmation", "soft_opt_in"})


@dataclass(frozen=True)
class SubjectData:
    """The subject row (None if the ref has never been seen) and its consent states."""

    ref: str
    subject: Subject | None
    states: dict[tuple[str, str], StateView]

    @property
    def flags(self) -> SubjectFlags:
        # An unknown ref is shown as a fresh subject (every control off); its first decision creates it.
        if self.subject is None:
            return SubjectFlags()
        return SubjectFlags(self.subject.erased_at, self.subject.restricted_at)

    @property
    def email(self) -> str | None:
        return self.subject.email if self.subject is not None else None

    @property
    def locale(self) -> str | None:
        return self.subject.locale if self.subject is not None else None

    @property
    def erased(self) -> bool:
        return self.subject is not None and self.subject.erased_at is not None


@dataclass(frozen=True)
class Control:
    purpose: str
    channel: str
    kind: str  # switch | object | necessary
    basis: str
    answer: Answer
    has_email: bool

    @property
    def id(self) -> str:
        return f"sw-{self.purpose}-{self.channel}"

    @property
    def on(self) -> bool:
        """The switch position: on while granted, soft opt-in or waiting for confirmation (not when re-consent or
        expiry stopped it)."""
        if self.kind == "necessary":
            return True
        if self.kind == "object":
            return self.answer.reason != "objected"
        return self.answer.reason in ON_STATUSES

    @property
    def reason(self) -> str:
        return self.answer.reason

    @property
    def next_value(self) -> str:
        if self.kind == "object":
            return "unobject" if self.answer.reason == "objected" else "object"
        return "off" if self.on else "on"

    @property
    def note(self) -> str | None:
        """Which explanation the row shows under this control."""
        reason = self.answer.reason
        if reason == "pending_confirmation":
            return "pending" if self.has_email else "pending_no_email"
        if reason in ("reconsent_required", "soft_opt_in", "expired", "granted", "objected", "restricted"):
            return reason
        return None


@dataclass(frozen=True)
class Reconsent:
    purpose: str
    accepted: PolicyInfo
    current: PolicyInfo
    channels: tuple[str, ...]


@dataclass(frozen=True)
class Row:
    purpose: PurposeInfo
    policy: PolicyInfo
    controls: tuple[Control, ...]
    reconsent: Reconsent | None

    @property
    def code(self) -> str:
        return self.purpose.code


async def load_subject(ref: str) -> SubjectData:
    subject = await Subject.get_or_none(ref=ref)
    states = await projected_states(subject.id) if subject is not None else {}
    return SubjectData(ref, subject, states)


def document_for(catalog: CatalogSnapshot, purpose: str) -> str:
    documents = sorted({p.document for p in catalog.policies.values() if purpose in p.purposes})
    if PRIMARY_DOCUMENT in documents or not documents:
        return PRIMARY_DOCUMENT
    return documents[0]


def _sort_key(purpose: PurposeInfo) -> tuple[bool, bool, bool, str]:
    web_only = purpose.channels <= {"web"}
    return (web_only, purpose.legal_basis == "necessary", not purpose.marketing, purpose.code)


def build_rows(catalog: CatalogSnapshot, data: SubjectData, lang: str, now: datetime) -> list[Row]:
    rows = []
    for purpose in sorted(catalog.purposes.values(), key=_sort_key):
        policy = catalog.in_force(document_for(catalog, purpose.code), lang, now)
        if policy is None:
            continue
        controls = []
        for channel in sorted(purpose.channels, key=lambda c: (*CHANNEL_ORDER, c).index(c)):
            basis = purpose.basis_for(channel)
            kind = {"necessary": "necessary", "legitimate_interest": "object"}.get(basis, "switch")
            answer = decide(catalog, data.flags, data.states.get((purpose.code, channel)), purpose.code, channel, now)
            controls.append(Control(purpose.code, channel, kind, basis, answer, bool(data.email)))
        reconsent = _reconsent(catalog, data, purpose, controls, lang, now)
        rows.append(Row(purpose, policy, tuple(controls), reconsent))
    return rows


def _reconsent(
    catalog: CatalogSnapshot,
    data: SubjectData,
    purpose: PurposeInfo,
    controls: list[Control],
    lang: str,
    now: datetime,
) -> Reconsent | None:
    channels = tuple(c.channel for c in controls if c.answer.reason == "reconsent_required")
    if not channels:
        return None
    state = data.states[(purpose.code, channels[0])]
    accepted = catalog.policies_by_id.get(state.policy_version_id)
    if accepted is None:
        return None
    # The version the person accepted, in the language they read now (same version number).
    accepted = catalog.policies.get(f"{accepted.document}/{accepted.version}/{lang}", accepted)
    current = catalog.in_force(accepted.document, lang, now)
    if current is None or current.id == accepted.id:
        return None
    return Reconsent(purpose.code, accepted, current, channels)


def find_control(rows: Sequence[Row], purpose: str, channel: str) -> tuple[Row, Control] | None:
    for row in rows:
        if row.code == purpose:
            for control in row.controls:
                if control.channel == channel:
                    return row, control
    return None
