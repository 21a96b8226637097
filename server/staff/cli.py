"""The service desk's account verbs: `staff create` (a local account that can sign in at once) and `staff list`.

The `staff` group also holds `staff reminders`, declared by `server.dsr` (`server/dsr/cli.py`), which owns the
requests it reads.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from server.settings import Settings
from server.staff.roles import ROLES
from server.verbs import Group, Verb, in_database


def _create_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--email", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--role", required=True, choices=ROLES)
    parser.add_argument("--password-stdin", action="store_true", help="read the password from standard input")


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


def staff_create(settings: Settings, args: argparse.Namespace) -> int:
    from server.errors import ConsentError

    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else None

    async def work() -> int:
        try:
            print(json.dumps(await create_command(args.email, args.name, args.role, password)))
        except ConsentError as exc:
            print(f"staff create refused: {exc.detail}", file=sys.stderr)
            return 2
        return 0

    return in_database(settings, work)


def staff_list(settings: Settings, args: argparse.Namespace) -> int:
    from server.models import StaffAccount

    async def work() -> int:
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

    return in_database(settings, work)


VERBS: list[Group | Verb] = [
    Group("staff", "service desk staff and requests"),
    Verb(
        ("staff", "create"),
        "create a local staff account (prints JSON; a password is generated)",
        run=staff_create,
        arguments=_create_arguments,
    ),
    Verb(("staff", "list"), "list staff accounts (JSON lines)", run=staff_list),
]
