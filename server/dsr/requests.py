"""Data-subject requests: opening, assigning, status changes, extensions, history, the queue and reminders.

No HTTP here and no contact data: a request names its subject by id, history entries name staff by id, and every
change is one history row (GDPR 5(2)). The effect of each kind (export, erasure, ...) is in `server.dsr.effects`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from server.db import lock_row
from server.dsr.deadlines import (
    OPEN_STATUSES,
    DeadlineError,
    add_months,
    check_extension,
    due_date,
    received_on,
    urgency,
)
from server.errors import InvalidRequest, NotFound
from server.ledger.evidence import pseudonym
from server.models import DataSubjectRequest, DsrHistory, StaffAccount, Subject

KINDS = ("access", "portability", "rectification", "erasure", "restriction", "objection")
CHANNELS = ("agent", "preference_center", "email", "post")
# Status changes a person may make by hand; `done` comes only from carrying out the request (effects).
MANUAL_STATUSES = ("in_progress", "waiting_customer", "refused")
KIND_TITLES = {
    "access": "Access (GDPR 15)",
    "portability": "Portability (GDPR 20)",
    "rectification": "Rectification (GDPR 16)",
    "erasure": "Erasure (GDPR 17)",
    "restriction": "Restriction (GDPR 18)",
    "objection": "Objection to direct marketing (GDPR 21(3))",
}
MAX_TEXT = 2000
# How far back a request's date of receipt may be: a year. A request received earlier is past every deadline GDPR
# 12(3) allows (one month, three with the extension) many times over; such a date is a typing error (0001-01-01,
# 1026 for 2026), which would put the request at the top of the queue "overdue by 739,919 days".
MAX_AGE_MONTHS = 12


@dataclass(frozen=True)
class Actor:
    """Who acts: a member of staff (`staff`, id), the person themself (`subject`) or the system."""

    type: str
    id: str | None = None

    @property
    def label(self) -> str:
        return f"{self.type}:{self.id}" if self.id else self.type


SUBJECT = Actor("subject")
SYSTEM = Actor("system")


def staff_actor(staff_id: int) -> Actor:
    return Actor("staff", str(staff_id))


def earliest_received(today: date) -> date:
    return add_months(today, -MAX_AGE_MONTHS)


def _text(value: str, name: str, *, required: bool = False) -> str:
    # Browsers send a textarea's line breaks as CRLF but count them as one character against `maxlength`: count
    # them as the person typed them, or text the form accepted is refused here.
    text = value.replace("\r\n", "\n").strip()
    if required and not text:
        raise InvalidRequest(f"{name} is required", parameter=name)
    if len(text) > MAX_TEXT:
        raise InvalidRequest(f"{name} is longer than {MAX_TEXT} characters", parameter=name)
    return text


async def history(
    request_id: int, actor: Actor, action: str, note: str, at: datetime, conn: BaseDBAsyncClient | None = None
) -> None:
    await DsrHistory.create(request_id=request_id, at=at, actor=actor.label, action=action, note=note, using_db=conn)


async def subject_for(ref: str, secret: str) -> Subject:
    """The subject row of `ref`, created when the company knows the person but the ledger does not yet."""
    subject = await Subject.get_or_none(ref=ref)
    if subject is None:
        await Subject.get_or_create(ref=ref, defaults={"id": uuid.uuid4(), "pseudonym": pseudonym(secret, ref)})
        subject = await Subject.get(ref=ref)
    return subject


async def open_or_repeat(
    subject: Subject,
    kind: str,
    *,
    channel: str,
    details: str,
    actor: Actor,
    now: datetime,
    zone: ZoneInfo,
    received: date | None = None,
    owner_id: int | None = None,
    repeat_within: timedelta | None = None,
) -> tuple[DataSubjectRequest, bool]:
    """A new request, due one month after the day it was received (GDPR 12(3)), and whether it is new: with
    `repeat_within`, the same request (subject, kind, channel, opener and text) opened that recently is returned
    instead of a second one (a double click, or a form sent again from the browser's history)."""
    if kind not in KINDS:
        raise InvalidRequest(f"kind {kind!r} is not one of {', '.join(KINDS)}", parameter="kind")
    if channel not in CHANNELS:
        raise InvalidRequest(f"channel {channel!r} is not one of {', '.join(CHANNELS)}", parameter="channel")
    today = received_on(now, zone)
    day = received or today
    if day > today:
        raise InvalidRequest("the received date cannot be in the future", parameter="received_on")
    if day < earliest_received(today):
        raise InvalidRequest(
            f"the received date cannot be more than a year ago (before {earliest_received(today).isoformat()}): "
            "check the year",
            parameter="received_on",
        )
    due = due_date(day)
    received_at = now if day == today else datetime(day.year, day.month, day.day, 12, tzinfo=zone)
    text = _text(details, "details")
    async with in_transaction() as conn:
        if repeat_within is not None:
            # Locked before the read: two submissions arriving together would otherwise both find no earlier one.
            await lock_row(conn, "subjects", subject.id)
            earlier = (
                await DataSubjectRequest.filter(
                    subject_id=subject.id,
                    kind=kind,
                    channel=channel,
                    opened_by=actor.label,
                    details=text,
                    received_at__gte=now - repeat_within,
                )
                .using_db(conn)
                .order_by("-id")
                .first()
            )
            if earlier is not None:
                return earlier, False
        request = await DataSubjectRequest.create(
            using_db=conn,
            subject_id=subject.id,
            kind=kind,
            channel=channel,
            received_at=received_at,
            original_due_on=due,
            due_on=due,
            status="open",
            owner_id=owner_id,
            opened_by=actor.label,
            details=text,
        )
        await history(
            request.id,
            actor,
            "opened",
            f"{KIND_TITLES[kind]}, received {day.isoformat()} via {channel}, due {due.isoformat()}",
            now,
            conn,
        )
        if owner_id is not None:
            await history(request.id, actor, "assigned", f"to staff:{owner_id}", now, conn)
    return request, True


async def get_request(request_id: int) -> DataSubjectRequest:
    request = await DataSubjectRequest.get_or_none(id=request_id)
    if request is None:
        raise NotFound("no request with this id", parameter="id")
    return request


def _still_open(request: DataSubjectRequest) -> None:
    if request.status not in OPEN_STATUSES:
        raise InvalidRequest(f"the request is {request.status}; it can no longer change", status=request.status)


async def assign(request: DataSubjectRequest, owner_id: int | None, actor: Actor, now: datetime) -> None:
    _still_open(request)
    if owner_id is not None and not await StaffAccount.filter(id=owner_id, disabled_at__isnull=True).exists():
        raise InvalidRequest("no active staff account with this id", parameter="owner")
    await DataSubjectRequest.filter(id=request.id).update(owner_id=owner_id)
    await history(request.id, actor, "assigned", f"to staff:{owner_id}" if owner_id else "unassigned", now)
    request.owner_id = owner_id


async def set_status(request: DataSubjectRequest, status: str, note: str, actor: Actor, now: datetime) -> None:
    """Move an open request to `in_progress`, `waiting_customer` or `refused` (refusing needs the reasons, which
    the person is told together with their right to complain, GDPR 12(4))."""
    _still_open(request)
    if status not in MANUAL_STATUSES:
        raise InvalidRequest(f"status {status!r} is not one of {', '.join(MANUAL_STATUSES)}", parameter="status")
    text = _text(note, "note", required=status == "refused")
    closed = now if status == "refused" else None
    changes: dict[str, Any] = {"status": status, "closed_at": closed}
    if status == "refused":
        changes["outcome"] = text
    await DataSubjectRequest.filter(id=request.id).update(**changes)
    await history(request.id, actor, f"status:{status}", text, now)
    request.status = status


async def extend(
    request: DataSubjectRequest, months: int, reason: str, actor: Actor, now: datetime, zone: ZoneInfo
) -> date:
    """GDPR 12(3): once, by up to two months, with the reasons; returns the new due date."""
    _still_open(request)
    text = _text(reason, "reason", required=True)
    try:
        new_due = check_extension(
            today=received_on(now, zone),
            original_due=request.original_due_on,
            already_extended=request.extended_at is not None,
            reason=text,
            months=months,
        )
    except DeadlineError as exc:
        raise InvalidRequest(str(exc), parameter="months") from None
    await DataSubjectRequest.filter(id=request.id).update(due_on=new_due, extension_reason=text, extended_at=now)
    await history(request.id, actor, "extended", f"due {new_due.isoformat()} ({months} month(s)): {text}", now)
    request.due_on, request.extension_reason, request.extended_at = new_due, text, now
    return new_due


async def complete(
    request: DataSubjectRequest, outcome: str, actor: Actor, now: datetime, conn: BaseDBAsyncClient | None = None
) -> None:
    _still_open(request)
    await DataSubjectRequest.filter(id=request.id).using_db(conn).update(status="done", outcome=outcome, closed_at=now)
    await history(request.id, actor, "status:done", outcome, now, conn)
    request.status = "done"


@dataclass(frozen=True)
class QueueItem:
    id: int
    kind: str
    status: str
    ref: str
    received_at: datetime
    due_on: date
    extended: bool
    owner_id: int | None
    owner_name: str | None
    overdue: bool
    reminder: bool
    days_left: int


async def queue(
    today: date,
    reminder_days: int,
    *,
    statuses: tuple[str, ...] = OPEN_STATUSES,
    owner_id: int | None = None,
    subject_id: Any = None,
    limit: int = 500,
) -> list[QueueItem]:
    """Requests sorted by due date (the most urgent first), each flagged overdue or due soon."""
    query = DataSubjectRequest.filter(status__in=list(statuses))
    if owner_id is not None:
        query = query.filter(owner_id=owner_id)
    if subject_id is not None:
        query = query.filter(subject_id=subject_id)
    rows = (
        await query.order_by("due_on", "id")
        .limit(limit)
        .values(
            "id",
            "kind",
            "status",
            "received_at",
            "due_on",
            "extended_at",
            "owner_id",
            "subject__ref",
            "owner__name",
        )
    )
    items = []
    for row in rows:
        flags = urgency(row["due_on"], today, row["status"], reminder_days)
        items.append(
            QueueItem(
                id=row["id"],
                kind=row["kind"],
                status=row["status"],
                ref=row["subject__ref"],
                received_at=row["received_at"],
                due_on=row["due_on"],
                extended=row["extended_at"] is not None,
                owner_id=row["owner_id"],
                owner_name=row["owner__name"],
                overdue=flags.overdue,
                reminder=flags.reminder,
                days_left=flags.days_left,
            )
        )
    return items


async def request_history(request_id: int) -> list[dict[str, Any]]:
    return list(
        await DsrHistory.filter(request_id=request_id).order_by("at", "id").values("at", "actor", "action", "note")
    )
