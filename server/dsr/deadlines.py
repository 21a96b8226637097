"""The clock of a data-subject request (GDPR 12(3)), as pure functions of dates.

One month from receipt, computed as Regulation (EEC, Euratom) No 1182/71 art. 3(2)(c) says: the period ends on
the same date of the following month, or, when that month has no such date, on its last day (received 31 January
-> due 29 February in a leap year, 28 February otherwise). The day of receipt is the date where the controller is
(`zone`), not UTC. The period may be extended once, by up to two further months counted from the original due
date, with the reasons given to the person within the first month.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

MAX_EXTENSION_MONTHS = 2
OPEN_STATUSES = ("open", "in_progress", "waiting_customer")
STATUSES = (*OPEN_STATUSES, "done", "refused")


class DeadlineError(ValueError):
    """An extension the rules do not allow; the message says which rule."""


def add_months(day: date, months: int) -> date:
    """`day` moved by `months` calendar months, clamped to the last day of the target month (1182/71 art. 3)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def received_on(received_at: datetime, zone: ZoneInfo) -> date:
    return received_at.astimezone(zone).date()


def due_date(received: date) -> date:
    """GDPR 12(3): without undue delay and at the latest one month after receipt."""
    return add_months(received, 1)


def extended_due_date(original_due: date, months: int) -> date:
    if not 1 <= months <= MAX_EXTENSION_MONTHS:
        raise DeadlineError(f"an extension is 1 or {MAX_EXTENSION_MONTHS} months, not {months}")
    return add_months(original_due, months)


def check_extension(*, today: date, original_due: date, already_extended: bool, reason: str, months: int) -> date:
    """The new due date of an allowed extension, or `DeadlineError` naming the rule that forbids it."""
    if already_extended:
        raise DeadlineError("the deadline was already extended once (GDPR 12(3): two further months at most)")
    if not reason.strip():
        raise DeadlineError("an extension needs the reasons for the delay, which are sent to the person")
    if today > original_due:
        raise DeadlineError(
            f"the person must be told of an extension within the first month (before {original_due.isoformat()})"
        )
    return extended_due_date(original_due, months)


@dataclass(frozen=True)
class Urgency:
    overdue: bool
    reminder: bool
    days_left: int


def urgency(due: date, today: date, status: str, reminder_days: int) -> Urgency:
    """Overdue past the due date; a reminder within `reminder_days` of it; closed requests are neither."""
    days_left = (due - today).days
    if status not in OPEN_STATUSES:
        return Urgency(False, False, days_left)
    return Urgency(days_left < 0, 0 <= days_left <= reminder_days, days_left)
