"""Reminders before a request's deadline (GDPR 12(3)): every open request due within DSR_REMINDER_DAYS, or
overdue, is mailed to its owner (unowned ones to every supervisor), at most once a day per request. The mails name
request numbers, kinds and dates only, never the customer. The server sends them every DSR_REMINDER_POLL_SECONDS
(`remind`, a background job run by one process: server.leases), or a daily `staff reminders --send`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from tortoise.expressions import Q

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
    sent = []
    for reminder in await due_reminders(today, reminder_days):
        # Claimed before it is mailed, by a conditional update: two runs at once (the server's and a cron's
        # `staff reminders --send`) remind each request once.
        claimed = (
            await DataSubjectRequest.filter(id=reminder.request_id)
            .filter(Q(last_reminder_on=None) | ~Q(last_reminder_on=today))
            .update(last_reminder_on=today)
        )
        if claimed:
            sent.append(reminder)
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
        who = ", ".join(reminder.recipients) or "nobody (no supervisor account)"
        state = "overdue" if reminder.overdue else f"due in {reminder.days_left} day(s)"
        await dsr.history(reminder.request_id, SYSTEM, "reminder", f"{state}; reminded {who}", now)
    return sent


async def remind(
    mailer: Mailer,
    clock: Callable[[], datetime],
    zone: ZoneInfo,
    reminder_days: int,
    console_url: str,
    interval_s: int,
) -> None:
    """Send the reminders due now, then again every `interval_s` (each request once on the controller's day)."""
    while True:
        now = clock()
        try:
            await send_reminders(mailer, now.astimezone(zone).date(), reminder_days, console_url, now)
        except Exception:  # a failed round is logged and tried again at the next one
            log.exception("reminder round failed")
        await asyncio.sleep(interval_s)
