"""Reminders before a request's deadline (GDPR 12(3)): every open request due within DSR_REMINDER_DAYS, or
overdue, is mailed to its owner (unowned ones to every supervisor), at most once a day per request. The mails name
request numbers, kinds and dates only, never the customer."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime

from server.dsr import requests as dsr
from server.dsr.requests import SYSTEM
from server.mail.mailer import Mailer
from server.models import DataSubjectRequest, StaffAccount

log = logging.getLogger("server.dsr")


@dataclass(frozen=True)
class Reminder:
    request_id: int
    kind: str
    due_on: date
    overdue: bool
    days_left: int
    recipients: tuple[str, ...]


async def due_reminders(today: date, reminder_days: int) -> list[Reminder]:
    """Open requests overdue or due within `reminder_days`, most urgent first, with who should be reminded."""
    items = [i for i in await dsr.queue(today, reminder_days) if i.overdue or i.reminder]
    accounts = {a.id: a for a in await StaffAccount.filter(disabled_at__isnull=True)}
    supervisors = tuple(sorted(a.email for a in accounts.values() if a.role == "supervisor"))
    reminders = []
    for item in items:
        owner = accounts.get(item.owner_id) if item.owner_id else None
        recipients = (owner.email,) if owner else supervisors
        reminders.append(Reminder(item.id, item.kind, item.due_on, item.overdue, item.days_left, recipients))
    return reminders


async def send_reminders(
    mailer: Mailer, today: date, reminder_days: int, console_url: str, now: datetime
) -> list[Reminder]:
    """Mail today's reminders (one mail per recipient) and note each in the request's history; requests already
    reminded today are skipped. Returns the reminders sent."""
    due = [r for r in await due_reminders(today, reminder_days)]
    already = set(
        await DataSubjectRequest.filter(id__in=[r.request_id for r in due], last_reminder_on=today).values_list(
            "id", flat=True
        )
    )
    sent = [r for r in due if r.request_id not in already]
    by_recipient: dict[str, list[Reminder]] = {}
    for reminder in sent:
        for recipient in reminder.recipients:
            by_recipient.setdefault(recipient, []).append(reminder)
    for recipient, items in by_recipient.items():
        lines = [
            f"#{r.request_id} {r.kind}: due {r.due_on.isoformat()} "
            f"({'OVERDUE by ' + str(-r.days_left) + ' day(s)' if r.overdue else 'in ' + str(r.days_left) + ' day(s)'})"
            f" {console_url}/console/requests/{r.request_id}"
            for r in items
        ]
        body = "Data-subject requests waiting for you (GDPR 12(3): one month from receipt):\n\n" + "\n".join(lines)
        try:
            await mailer.send(mailer.message(recipient, f"{len(items)} request(s) due soon", body + "\n", "en"))
        except Exception as exc:  # one unreachable mailbox must not stop the others
            log.warning("reminder not sent", extra={"error": type(exc).__name__})
    for reminder in sent:
        await DataSubjectRequest.filter(id=reminder.request_id).update(last_reminder_on=today)
        who = ", ".join(reminder.recipients) or "nobody (no supervisor account)"
        state = "overdue" if reminder.overdue else f"due in {reminder.days_left} day(s)"
        await dsr.history(reminder.request_id, SYSTEM, "reminder", f"{state}; reminded {who}", now)
    return sent
