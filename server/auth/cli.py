"""Machine authentication's verbs: `clients create | list | revoke | rotate-secret | set-scopes` (an API client and
its life: `server.auth.lifecycle`) and `keys rotate`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from server.settings import Settings
from server.verbs import Group, Verb, in_database, operator_name

if TYPE_CHECKING:
    from server.auth.lifecycle import Actor


def _client_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", required=True)
    parser.add_argument("--scopes", required=True, help='space-separated, e.g. "consent:check consent:read"')


def clients_create(settings: Settings, args: argparse.Namespace) -> int:
    from server.auth.clients import ClientRefused, create_client

    async def work() -> int:
        try:
            client = await create_client(args.name, args.scopes)
        except ClientRefused as exc:
            print(str(exc), file=sys.stderr)
            return 2
        print(
            json.dumps(
                {
                    "client_id": client.client_id,
                    "client_secret": client.client_secret,
                    "name": client.name,
                    "scopes": client.scopes,
                }
            )
        )
        return 0

    return in_database(settings, work)


def _id_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("client_id", metavar="ID", help="the client's id (cl_...)")


def _rotate_arguments(parser: argparse.ArgumentParser) -> None:
    _id_argument(parser)
    parser.add_argument(
        "--revoke-tokens", action="store_true", help="also refuse every token issued before (rotation alone does not)"
    )


def _scopes_arguments(parser: argparse.ArgumentParser) -> None:
    _id_argument(parser)
    parser.add_argument("scopes", metavar="SCOPES", help='space-separated, e.g. "consent:check consent:read"')


def _lifecycle(settings: Settings, change: Callable[[Actor, datetime], Awaitable[object]]) -> int:
    """Run one change as the operator (`user@host`, for the access log) and print its answer as JSON; a refusal
    exits 2 with its message."""
    from server.auth.lifecycle import Actor
    from server.clock import utc_now
    from server.errors import ConsentError

    async def work() -> int:
        try:
            answer = await change(Actor("operator", operator_name()), utc_now())
        except ConsentError as exc:
            print(f"refused: {exc.detail}", file=sys.stderr)
            return 2
        print(json.dumps(answer))
        return 0

    return in_database(settings, work)


def clients_list(settings: Settings, args: argparse.Namespace) -> int:
    from server.auth.lifecycle import list_clients

    async def work() -> int:
        for client in await list_clients():
            print(json.dumps(client))
        return 0

    return in_database(settings, work)


def clients_revoke(settings: Settings, args: argparse.Namespace) -> int:
    from server.auth.lifecycle import revoke

    return _lifecycle(settings, lambda actor, now: revoke(args.client_id, actor, now))


def clients_rotate_secret(settings: Settings, args: argparse.Namespace) -> int:
    from server.auth.lifecycle import rotate_secret

    async def change(actor: Actor, now: datetime) -> dict[str, object]:
        overlap = timedelta(seconds=settings.client_secret_overlap_s)
        rotated = await rotate_secret(args.client_id, actor, now, overlap, revoke_tokens=args.revoke_tokens)
        return {**rotated.client, "client_secret": rotated.client_secret}

    return _lifecycle(settings, change)


def clients_set_scopes(settings: Settings, args: argparse.Namespace) -> int:
    from server.auth.lifecycle import set_scopes

    return _lifecycle(settings, lambda actor, now: set_scopes(args.client_id, args.scopes, actor, now))


def keys_rotate(settings: Settings, args: argparse.Namespace) -> int:
    """Reads and writes the key directory only: no database."""
    from server.auth.keys import signing_keys

    store = signing_keys(settings)
    print(json.dumps({"kid": store.rotate(), "keys": len(store.jwks()["keys"])}))
    return 0


VERBS: list[Group | Verb] = [
    Group("clients", "API clients"),
    Verb(
        ("clients", "create"),
        "create a client; prints its id and secret as JSON",
        run=clients_create,
        arguments=_client_arguments,
    ),
    Verb(("clients", "list"), "every client as a JSON line (never a secret)", run=clients_list),
    Verb(
        ("clients", "revoke"),
        "revoke a client: no new token, and its tokens refused by every server within a second",
        run=clients_revoke,
        arguments=_id_argument,
    ),
    Verb(
        ("clients", "rotate-secret"),
        "a new secret, printed once; the old one works for CLIENT_SECRET_OVERLAP_S",
        run=clients_rotate_secret,
        arguments=_rotate_arguments,
    ),
    Verb(
        ("clients", "set-scopes"),
        "replace a client's scopes; tokens carrying a scope taken away are refused",
        run=clients_set_scopes,
        arguments=_scopes_arguments,
    ),
    Group("keys", "signing keys"),
    Verb(("keys", "rotate"), "add a new active signing key (old keys stay published)", run=keys_rotate),
]
