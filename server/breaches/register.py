"""The breach register (GDPR 33 and 34): facts, the 72-hour clock, and every step, each in one transaction.

GDPR 33(1): a personal data breach is notified to the supervisory authority without undue delay and, where
feasible, within 72 hours of becoming aware of it, unless it is unlikely to result in a risk to people's rights and
freedoms; a later notification gives the reasons for the delay. 33(3) lists what the notification describes, 33(4)
lets it come in phases, 33(5) asks for every breach to be documented (facts, effects, remedial action), notified or
not. 34: where the risk is high, the people concerned are told without undue delay, in clear and plain language,
unless 34(3) applies (the data were unintelligible to others, later measures removed the high risk, or telling each
person would take disproportionate effort and a public communication is made instead).

Every change is a row of `breach_history` with the fields' old and new values (the database refuses to change or
delete those rows), and every change names the version of the breach it was made from: a form made from an older
version is refused instead of silently overwriting what someone else wrote meanwhile.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tortoise.transactions import in_transaction

from server.db import lock_row
from server.errors import ConsentError, InvalidRequest, NotFound
from server.models import Breach, BreachEntry

NOTIFY_WITHIN = timedelta(hours=72)
KINDS = {
    "confidentiality": "Confidentiality: data disclosed to or accessed by someone not entitled to them",
    "integrity": "Integrity: data altered without authority",
    "availability": "Availability: data lost, destroyed or out of reach",
}
RISKS = {
    "unassessed": "Not assessed yet",
    "unlikely": "Unlikely to result in a risk to people (no notification; documented here, GDPR 33(5))",
    "risk": "A risk to people's rights and freedoms (notify the supervisory authority, GDPR 33)",
    "high": "A high risk (notify the authority and tell the people concerned, GDPR 33 and 34)",
}
TEXT_MAX = 10_000
ESTIMATE_MAX = 2**31 - 1  # the columns are 32-bit integers
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)  # no instant of the register comes before this
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # control characters other than tab and newline


class StaleBreach(ConsentError):
    status = 409
    slug = "stale-breach"
    title = "The breach changed meanwhile"


@dataclass(frozen=True)
class Facts:
    """What the register says about a breach, as entered on the form (instants in UTC)."""

    title: str
    aware_at: datetime
    occurred_from: datetime | None
    occurred_until: datetime | None
    kinds: list[str]
    description: str
    data_categories: str
    subject_categories: str
    subjects_estimate: int | None
    records_estimate: int | None
    consequences: str
    measures: str
    risk: str


FACT_LABELS = {
    "title": "Title",
    "aware_at": "Aware since",
    "occurred_from": "Occurred from",
    "occurred_until": "Occurred until",
    "kinds": "Kind of breach",
    "description": "What happened",
    "data_categories": "Categories of personal data",
    "subject_categories": "Categories of people",
    "subjects_estimate": "People concerned (approx.)",
    "records_estimate": "Records concerned (approx.)",
    "consequences": "Likely consequences",
    "measures": "Measures taken or proposed",
    "risk": "Risk",
    "authority_notified_at": "Authority notified at",
    "authority_reference": "Authority's reference",
    "late_reason": "Reasons for the delay",
    "subjects_informed_at": "People told at",
    "no_communication_reason": "Why people are not told (GDPR 34(3))",
    "closed_at": "Closed at",
}


@dataclass(frozen=True)
class Deadline:
    """Where a breach stands against GDPR 33 and 34 at `now`."""

    notify_by: datetime
    state: str  # notified, not_required, overdue, due, closed
    hours_left: int  # whole hours until notify_by (negative: overdue)
    late: bool  # notified, or still to notify, after notify_by
    inform_people: bool  # high risk, nobody told yet and no GDPR 34(3) reason recorded


def deadline(breach: Breach, now: datetime) -> Deadline:
    notify_by = breach.aware_at + NOTIFY_WITHIN
    left = int((notify_by - now).total_seconds() // 3600)
    inform = breach.risk == "high" and breach.subjects_informed_at is None and not breach.no_communication_reason
    if breach.authority_notified_at is not None:
        state, late = "notified", breach.authority_notified_at > notify_by
    elif breach.closed_at is not None:
        state, late = "closed", False
    elif breach.risk == "unlikely":
        state, late = "not_required", False
    elif now > notify_by:
        state, late = "overdue", True
    else:
        state, late = "due", False
    return Deadline(notify_by, state, left, late, inform)


# --- reading the forms ------------------------------------------------------------------------------------------


def text_field(form: dict[str, str], name: str, *, required: bool = False, limit: int = TEXT_MAX) -> str:
    """A free-text field: tabs and newlines allowed, no other control character; `title` on one line."""
    value = form.get(name, "").replace("\r\n", "\n").strip()
    label = FACT_LABELS.get(name, name.capitalize())
    if required and not value:
        raise InvalidRequest(f"{label} is required", field=name)
    if len(value) > limit:
        raise InvalidRequest(f"{label} is longer than {limit} characters", field=name)
    if _CONTROL.search(value) or (name == "title" and "\n" in value):
        raise InvalidRequest(f"{label} holds a control character or, for a title, a line break", field=name)
    return value


def _instant(
    form: dict[str, str], name: str, zone: ZoneInfo, now: datetime, *, required: bool = False
) -> datetime | None:
    """A `datetime-local` field (the controller's local time, as staff read their clocks) in UTC, between 2000
    and now. A local time that does not exist (clocks going forward) is refused; one that happens twice (clocks
    going back) is the first of the two, which puts a deadline earlier, never later."""
    raw = form.get(name, "").strip()
    label = FACT_LABELS.get(name, name)
    if not raw:
        if required:
            raise InvalidRequest(f"{label} is required", field=name)
        return None
    try:
        value = datetime.fromisoformat(raw)
        if not EARLIEST.year <= value.year < 9999:
            raise InvalidRequest(f"{label} must be between 2000 and now", field=name)
        if value.tzinfo is None:
            local = value.replace(tzinfo=zone, fold=0)
            if local.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != value:
                raise InvalidRequest(
                    f"{label}: {raw} does not exist in {zone.key} (the clocks went forward)", field=name
                )
            value = local
        instant = value.astimezone(UTC)
    except (ValueError, OverflowError):
        raise InvalidRequest(f"{label}: {raw[:40]!r} is not a date and time", field=name) from None
    if not EARLIEST <= instant <= now + timedelta(minutes=5):
        raise InvalidRequest(f"{label} must be between 2000 and now", field=name)
    return instant


def _estimate(form: dict[str, str], name: str) -> int | None:
    raw = form.get(name, "").strip().replace(" ", "").replace(",", "")
    if not raw:
        return None
    if not raw.isascii() or not raw.isdigit() or int(raw) >= ESTIMATE_MAX:
        raise InvalidRequest(f"{FACT_LABELS[name]} must be a whole number, or left empty if unknown", field=name)
    return int(raw)


def facts_from(form: dict[str, str], zone: ZoneInfo, now: datetime) -> Facts:
    """The facts on a breach form, checked: a clear error naming the field otherwise."""
    aware_at = _instant(form, "aware_at", zone, now, required=True)
    assert aware_at is not None
    occurred_from = _instant(form, "occurred_from", zone, now)
    occurred_until = _instant(form, "occurred_until", zone, now)
    if occurred_from is not None and occurred_from > aware_at:
        raise InvalidRequest("Occurred from is after Aware since: nobody is aware of a breach before it starts")
    if occurred_from is not None and occurred_until is not None and occurred_until < occurred_from:
        raise InvalidRequest("Occurred until is before Occurred from", field="occurred_until")
    risk = form.get("risk", "unassessed")
    if risk not in RISKS:
        raise InvalidRequest(f"Risk must be one of {', '.join(RISKS)}", field="risk")
    return Facts(
        title=text_field(form, "title", required=True, limit=200),
        aware_at=aware_at,
        occurred_from=occurred_from,
        occurred_until=occurred_until,
        kinds=[kind for kind in KINDS if form.get(f"kind_{kind}")],
        description=text_field(form, "description", required=True),
        data_categories=text_field(form, "data_categories"),
        subject_categories=text_field(form, "subject_categories"),
        subjects_estimate=_estimate(form, "subjects_estimate"),
        records_estimate=_estimate(form, "records_estimate"),
        consequences=text_field(form, "consequences"),
        measures=text_field(form, "measures"),
        risk=risk,
    )


def version_from(form: dict[str, str]) -> int:
    raw = form.get("version", "")
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9:
        raise InvalidRequest("the form has no version of the breach: reload the page", field="version")
    return int(raw)


# --- the steps --------------------------------------------------------------------------------------------------


def shown(value: Any) -> Any:
    """A value as the trail keeps it (JSON): instants in ISO 8601 UTC."""
    if isinstance(value, datetime):
        return value.astimezone(ZoneInfo("UTC")).isoformat().replace("+00:00", "Z")
    return value


async def get_breach(breach_id: int) -> Breach:
    breach = await Breach.get_or_none(id=breach_id)
    if breach is None:
        raise NotFound("no breach with this id", parameter="id")
    return breach


async def record(facts: Facts, actor: str, now: datetime) -> Breach:
    """A new breach in the register; its 72 hours run from `facts.aware_at`."""
    async with in_transaction():
        breach = await Breach.create(
            **{f.name: getattr(facts, f.name) for f in fields(Facts)}, recorded_at=now, recorded_by=actor
        )
        changes = {f.name: [None, shown(getattr(facts, f.name))] for f in fields(Facts)}
        await BreachEntry.create(breach=breach, at=now, actor=actor, action="recorded", changes=changes)
    return breach


async def _change(
    breach_id: int, version: int, actor: str, now: datetime, action: str, values: dict[str, Any], note: str = ""
) -> Breach:
    """Apply `values` to the breach made from `version`, with a trail row of what changed, in one transaction."""
    async with in_transaction() as conn:
        await lock_row(conn, "breaches", breach_id)
        breach = await Breach.get_or_none(id=breach_id, using_db=conn)
        if breach is None:
            raise NotFound("no breach with this id", parameter="id")
        if breach.version != version:
            raise StaleBreach(
                "Someone changed this breach after you opened the page. Reload it and make your change again."
            )
        changes = {
            name: [shown(getattr(breach, name)), shown(value)]
            for name, value in values.items()
            if getattr(breach, name) != value
        }
        if not changes and not note:
            raise InvalidRequest("Nothing changed: nothing was recorded.")
        # Compare and set, although the lock already keeps other writers out: the version is the rule.
        same = Breach.filter(id=breach_id, version=version).using_db(conn)
        updated = await same.update(**values, version=version + 1)
        if not updated:
            raise StaleBreach(
                "Someone changed this breach after you opened the page. Reload it and make your change again."
            )
        await BreachEntry.create(
            using_db=conn, breach=breach, at=now, actor=actor, action=action, changes=changes, note=note
        )
    return await get_breach(breach_id)


def _open(breach: Breach) -> None:
    if breach.closed_at is not None:
        raise InvalidRequest("This breach is closed. Reopen it first (with the reason) to change it.")


async def update(breach_id: int, version: int, facts: Facts, note: str, actor: str, now: datetime) -> Breach:
    """New facts or a new assessment (GDPR 33(4): information may come in phases).

    Moving "aware since" moves the 72-hour clock, so it needs a reason (the note), and it cannot go past what
    proves awareness: the breach's recording, its notification, the communication to the people. A move that
    makes a recorded notification late takes the note as the reasons for the delay (33(1))."""
    breach = await get_breach(breach_id)
    _open(breach)
    values: dict[str, Any] = {f.name: getattr(facts, f.name) for f in fields(Facts)}
    if facts.aware_at != breach.aware_at:
        if not note:
            raise InvalidRequest("Say in the note why Aware since changes: it moves the 72-hour clock.", field="note")
        proofs = [
            (breach.recorded_at + timedelta(minutes=5), "the breach was recorded"),
            (breach.authority_notified_at, "the authority was notified"),
            (breach.subjects_informed_at, "the people concerned were told"),
        ]
        for proof, what in proofs:
            if proof is not None and facts.aware_at > proof:
                raise InvalidRequest(f"Aware since cannot be later than when {what}.", field="aware_at")
        notified = breach.authority_notified_at
        if notified is not None and notified > facts.aware_at + NOTIFY_WITHIN and not breach.late_reason:
            values["late_reason"] = note
    return await _change(breach_id, version, actor, now, "updated", values, note)


async def notify_authority(
    breach_id: int, version: int, form: dict[str, str], zone: ZoneInfo, actor: str, now: datetime
) -> Breach:
    """Record that the supervisory authority was notified: when, its reference, and why late if after 72 hours."""
    breach = await get_breach(breach_id)
    _open(breach)
    if breach.authority_notified_at is not None:
        raise InvalidRequest(
            "The authority was already notified. Record further information you sent it as a note (GDPR 33(4))."
        )
    notified_at = _instant(form, "authority_notified_at", zone, now, required=True)
    assert notified_at is not None
    if notified_at < breach.aware_at:
        raise InvalidRequest("The notification is dated before anyone was aware of the breach")
    late_reason = text_field(form, "late_reason")
    if notified_at > breach.aware_at + NOTIFY_WITHIN and not late_reason:
        raise InvalidRequest(
            "The notification came more than 72 hours after awareness: GDPR 33(1) asks for the reasons for the delay.",
            field="late_reason",
        )
    values = {
        "authority_notified_at": notified_at,
        "authority_reference": text_field(form, "authority_reference", limit=128),
        "late_reason": late_reason,
    }
    return await _change(breach_id, version, actor, now, "authority_notified", values, text_field(form, "note"))


async def people_told(
    breach_id: int, version: int, form: dict[str, str], zone: ZoneInfo, actor: str, now: datetime
) -> Breach:
    """Record the communication to the people concerned (GDPR 34), or why none is due (34(3))."""
    breach = await get_breach(breach_id)
    _open(breach)
    if breach.subjects_informed_at is not None:
        raise InvalidRequest("The people were already told. Record any further communication as a note.")
    informed_at = _instant(form, "subjects_informed_at", zone, now)
    reason = text_field(form, "no_communication_reason")
    if (informed_at is None) == (not reason):
        raise InvalidRequest("Give either when the people were told, or why they are not (GDPR 34(3)), not both.")
    if informed_at is not None and informed_at < breach.aware_at:
        raise InvalidRequest("The communication is dated before anyone was aware of the breach")
    values = {"subjects_informed_at": informed_at, "no_communication_reason": reason}
    return await _change(
        breach_id,
        version,
        actor,
        now,
        "people_told" if informed_at else "no_communication",
        values,
        text_field(form, "note"),
    )


async def add_note(breach_id: int, version: int, note: str, actor: str, now: datetime) -> Breach:
    if not note:
        raise InvalidRequest("Write the note first.", field="note")
    return await _change(breach_id, version, actor, now, "note", {}, note)


async def close(breach_id: int, version: int, note: str, actor: str, now: datetime) -> Breach:
    """Close a breach whose duties are done: assessed; notified unless unlikely; people told or 34(3) if high."""
    breach = await get_breach(breach_id)
    _open(breach)
    missing = []
    if breach.risk == "unassessed":
        missing.append("assess the risk")
    if breach.risk in ("risk", "high") and breach.authority_notified_at is None:
        missing.append("record the notification to the supervisory authority")
    if deadline(breach, now).inform_people:
        missing.append("record that the people concerned were told, or why they are not (GDPR 34(3))")
    if not breach.consequences:
        missing.append("describe the likely consequences")
    if not breach.measures:
        missing.append("describe the measures taken")
    if deadline(breach, now).late and not breach.late_reason:
        missing.append("give the reasons for the late notification")
    if missing:
        raise InvalidRequest("Before closing: " + "; ".join(missing) + ".")
    return await _change(breach_id, version, actor, now, "closed", {"closed_at": now}, note)


async def reopen(breach_id: int, version: int, note: str, actor: str, now: datetime) -> Breach:
    breach = await get_breach(breach_id)
    if breach.closed_at is None:
        raise InvalidRequest("This breach is open.")
    if not note:
        raise InvalidRequest("Say why the breach is reopened.", field="note")
    return await _change(breach_id, version, actor, now, "reopened", {"closed_at": None}, note)


async def register(now: datetime) -> list[tuple[Breach, Deadline]]:
    """Every breach with where it stands: open ones first, the most urgent first; then closed, newest first."""
    breaches = await Breach.all().order_by("aware_at", "id")
    rows = [(b, deadline(b, now)) for b in breaches]
    opened = sorted((r for r in rows if r[0].closed_at is None), key=_urgency)
    closed = sorted((r for r in rows if r[0].closed_at is not None), key=lambda r: r[0].aware_at, reverse=True)
    return opened + closed


def _urgency(row: tuple[Breach, Deadline]) -> tuple[int, datetime]:
    """Overdue first, then those whose clock runs or whose people are still to be told, each by due time."""
    _, state = row
    rank = 0 if state.state == "overdue" else 1 if state.state == "due" or state.inform_people else 2
    return rank, state.notify_by


async def trail(breach_id: int) -> list[BreachEntry]:
    return list(await BreachEntry.filter(breach_id=breach_id).order_by("at", "id"))


def as_json(breach: Breach) -> dict[str, Any]:
    """The breach as the register export writes it."""
    names = ["id", *FACT_LABELS, "recorded_at", "recorded_by", "version"]
    return {name: shown(getattr(breach, name)) for name in names}
