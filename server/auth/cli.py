"""Machine authentication's verbs: `clients create` (an API client and its secret) and `keys rotate`."""

from __future__ import annotations

import argparse
import json
import sys

from server.settings import Settings
from server.verbs import Group, Verb, in_database


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
    Group("keys", "signing keys"),
    Verb(("keys", "rotate"), "add a new active signing key (old keys stay published)", run=keys_rotate),
]
