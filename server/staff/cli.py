"""`python -m server staff <verb>`: the service desk's command line.

    staff create --email E --name N --role R [--password-stdin]   a local account that can sign in at once
    staff list                                                     every account (JSON lines)
    staff reminders [--send]                                       requests due soon or overdue; --send mails them

`server/cli.py` hands every `staff ...` command line to `main(argv)` here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime
from typing import Any

from server.db import with_database
from server.settings import Settings, SettingsError
from server.staff.roles import ROLES


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m server staff", description="service desk staff and requests")
    verbs = parser.add_subparsers(dest="verb", required=True)
    create = verbs.add_parser("create", help="create a local staff account (prints JSON; a password is generated)")
    create.add_argument("--email", required=True)
    create.add_argument("--name", required=True)
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    verbs.add_parser("list", help="list staff accounts (JSON lines)")
    reminders = verbs.add_parser("reminders", help="requests due within DSR_REMINDER_DAYS or overdue")
    reminders.add_argument("--send", action="store_true", help="mail the owners (once a day per request)")
    return parser


async def create_command(email: str, name: str, role: str, password: str | None) -> dict[str, Any]:
    """Create the account; the JSON printed (the generated password appears only when none was given)."""
    from server.staff.accounts import create_staff

    new = await create_staff(email, name, role, password)
    out: dict[str, Any] = {
        "id": new.account.id,
        "email": new.account.email,
        "name": new.account.name,
        "role": new.account.role,
    }
    if new.password is not None:
        out["password"] = new.password
    return out


async def reminders_command(settings: Settings, send: bool, now: datetime | None = None) -> list[dict[str, Any]]:
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


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    from server.errors import ConsentError

    if args.verb == "create":
        password = sys.stdin.readline().rstrip("\n") if args.password_stdin else None

        async def create() -> int:
            try:
                print(json.dumps(await create_command(args.email, args.name, args.role, password)))
            except ConsentError as exc:
                print(f"staff create refused: {exc.detail}", file=sys.stderr)
                return 2
            return 0

        return asyncio.run(with_database(settings.database_url, create))
    if args.verb == "list":

        async def listing() -> int:
            from server.models import StaffAccount

            for account in await StaffAccount.all().order_by("id"):
                print(
                    json.dumps(
                        {
                            "id": account.id,
                            "email": account.email,
                            "name": account.name,
                            "role": account.role,
                            "disabled": account.disabled_at is not None,
                        }
                    )
                )
            return 0

        return asyncio.run(with_database(settings.database_url, listing))

    async def reminders() -> int:
        for line in await reminders_command(settings, args.send):
            print(json.dumps(line))
        return 0

    return asyncio.run(with_database(settings.database_url, reminders))
