"""The recipients' verbs (GDPR 19): register, list and disable the systems told of changes, and send or requeue
their notices."""

from __future__ import annotations

import argparse
import json
import sys

from server.settings import Settings
from server.verbs import Group, Verb, in_database


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name")
    parser.add_argument("url", help="https URL the signed notices are POSTed to")
    parser.add_argument(
        "--purposes", default="", help="comma-separated purposes whose withdrawals it is told of (default: all)"
    )


def _name_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name")


def recipients_add(settings: Settings, args: argparse.Namespace) -> int:
    from server.clock import utc_now
    from server.errors import InvalidRequest
    from server.recipients import registry

    async def work() -> int:
        try:
            recipient = await registry.add(
                args.name,
                args.url,
                utc_now(),
                purposes=args.purposes.split(","),
                allow_plain_http=settings.environment != "production",
            )
        except InvalidRequest as exc:
            print(str(exc), file=sys.stderr)
            return 2
        listed = {"id": recipient.id, "name": recipient.name, "url": recipient.url, "purposes": recipient.purposes}
        print(json.dumps(listed))
        return 0

    return in_database(settings, work)


def recipients_list(settings: Settings, args: argparse.Namespace) -> int:
    from server.recipients import registry

    async def work() -> int:
        for view in await registry.listing():
            print(json.dumps(view.__dict__))
        return 0

    return in_database(settings, work)


def recipients_disable(settings: Settings, args: argparse.Namespace) -> int:
    from server.clock import utc_now
    from server.recipients import registry

    async def work() -> int:
        if not await registry.disable(args.name, utc_now()):
            print(f"no active recipient named {args.name!r}", file=sys.stderr)
            return 1
        print(f"disabled {args.name}")
        return 0

    return in_database(settings, work)


def recipients_retry(settings: Settings, args: argparse.Namespace) -> int:
    from server.clock import utc_now
    from server.models import RecipientNotice
    from server.recipients.dispatcher import send_again

    async def work() -> int:
        failed = await RecipientNotice.filter(status="failed").values_list("id", flat=True)
        print(f"{await send_again(list(failed), utc_now())} notice(s) queued again")
        return 0

    return in_database(settings, work)


def recipients_deliver(settings: Settings, args: argparse.Namespace) -> int:
    from server.auth.keys import signing_keys
    from server.clock import utc_now
    from server.recipients.dispatcher import dispatcher_for

    async def work() -> int:
        # Signed with the newest key on disk, which a running server publishes too: it reads the key directory
        # again when the directory changed.
        dispatcher = dispatcher_for(settings, signing_keys(settings), utc_now)
        sent = 0
        while tried := await dispatcher.deliver_due():
            sent += tried
        print(f"{sent} notice(s) tried")
        return 0

    return in_database(settings, work)


VERBS: list[Group | Verb] = [
    Group("recipients", "systems told of withdrawals, erasures... (GDPR 19)"),
    Verb(("recipients", "add"), "register a recipient's notice URL", run=recipients_add, arguments=_add_arguments),
    Verb(("recipients", "list"), "recipients with their pending and failed notices (JSON lines)", run=recipients_list),
    Verb(
        ("recipients", "disable"),
        "queue no more notices for a recipient",
        run=recipients_disable,
        arguments=_name_argument,
    ),
    Verb(("recipients", "retry"), "send every failed notice again", run=recipients_retry),
    Verb(("recipients", "deliver"), "send the notices due now, then exit", run=recipients_deliver),
]
