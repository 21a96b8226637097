"""The data-subject requests' verb: `staff reminders [--send]`, the requests due within `DSR_REMINDER_DAYS` or
overdue, mailed to their owners with `--send` (run daily). In the `staff` group (`server/staff/cli.py`), which
the service desk works in; declared here, with the requests it reads."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

from server.settings import Settings
from server.verbs import Verb, in_database


def _send_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--send", action="store_true", help="mail the owners (once a day per request)")


async def reminders_command(settings: Settings, send: bool, now: datetime | None = None) -> list[dict[str, Any]]:
    """The reminders due on the controller's day of `now` (default: the present), mailed when `send`; one JSON
    object each."""
    from server.dsr.context import controller_zone
    from server.dsr.reminders import due_reminders, send_reminders
    from server.mail.mailer import Mailer
    from server.policies.controller import load_controller

    moment = now or datetime.now(UTC)
    today = moment.astimezone(controller_zone(load_controller(settings.policy_dir))).date()
    days = settings.dsr_reminder_days
    if send:
        found = await send_reminders(Mailer(settings), today, days, settings.issuer, moment)
    else:
        found = await due_reminders(today, days)
    return [
        {
            "request": r.request_id,
            "kind": r.kind,
            "due_on": r.due_on.isoformat(),
            "overdue": r.overdue,
            "days_left": r.days_left,
            "recipients": list(r.recipients),
        }
        for r in found
    ]


def staff_reminders(settings: Settings, args: argparse.Namespace) -> int:
    async def work() -> int:
        for line in await reminders_command(settings, args.send):
            print(json.dumps(line))
        return 0

    return in_database(settings, work)


VERBS: list[Verb] = [
    Verb(
        ("staff", "reminders"),
        "requests due within DSR_REMINDER_DAYS or overdue",
        run=staff_reminders,
        arguments=_send_argument,
    ),
]
