"""An API client's life after creation: list, revoke, rotate its secret, set its scopes.

Each change is one transaction that changes the client's row, moves `api_clients_version` on (so every server
process reloads its view of the clients within a second: `server.auth.revocation`) and writes who did what, when,
to the access log (GDPR 5(2), 32: who could reach the personal data, and since when). A revocation is final: a
revoked client is never usable again (create a new one). The command line (`python -m server clients ...`) and the
admin API (`/v1/clients/...`) both call these.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from server.auth.clients import new_secret, parse_scopes, touch_clients
from server.db import column_length
from server.errors import ConsentError, InvalidRequest, NotFound
from server.models import AccessLog, ApiClient

log = logging.getLogger("server.auth")


class UnknownClient(NotFound):
    """No API client has this id (`GET /v1/clients` lists them)."""

    slug = "unknown-client"
    title = "No API client with this id"


class ClientRevoked(ConsentError):
    """The client is revoked, and a revoked client stays so: its secret and scopes no longer change. Create a new
    client instead."""

    status = 409
    slug = "client-revoked"
    title = "The API client is revoked"


class OwnClient(ConsentError):
    """An admin client may not revoke itself, nor take the `admin` scope away from itself, over the API: it would
    lock out the one caller that can undo the mistake. Another admin client, or the command line
    (`python -m server clients revoke`), can."""

    status = 409
    slug = "own-client"
    title = "A client cannot revoke its own access"


@dataclass(frozen=True)
class Actor:
    """Who asks: `operator` (the command line: `user@host`) or `client` (an admin client over the API)."""

    type: str
    id: str


@dataclass(frozen=True)
class Rotated:
    client: dict[str, Any]
    client_secret: str  # shown once: only its SHA-256 is stored


def describe(client: ApiClient) -> dict[str, Any]:
    """What the list and every change answer: never a secret nor its hash."""
    return {
        "client_id": client.client_id,
        "name": client.name,
        "scopes": client.scopes.split(),
        "created_at": _iso(client.created_at),
        "revoked_at": _iso(client.disabled_at),
        "secret_rotated_at": _iso(client.secret_rotated_at),
        "previous_secret_valid_until": _iso(client.previous_secret_until),
        "token_generation": client.token_generation,
    }


async def list_clients() -> list[dict[str, Any]]:
    return [describe(client) for client in await ApiClient.all().order_by("created_at", "client_id")]


async def revoke(client_id: str, actor: Actor, now: datetime) -> dict[str, Any]:
    """Revoke the client: no token is issued to it again and every one it holds is refused. Revoking a revoked
    client changes nothing and is answered with it as it is."""
    if actor.type == "client" and actor.id == client_id:
        raise OwnClient("this client cannot revoke itself; revoke it with another admin client or the command line")
    async with in_transaction() as conn:
        client = await _locked(conn, client_id, actor)
        if client.disabled_at is not None:
            return describe(client)
        client.disabled_at = now
        client.token_generation += 1
        client.previous_secret_sha256 = None
        client.previous_secret_until = None
        fields = ["disabled_at", "token_generation", "previous_secret_sha256", "previous_secret_until"]
        await client.save(using_db=conn, update_fields=fields)
        await _audit(conn, now, actor, "client_revoke", client, {})
    return describe(client)


async def rotate_secret(
    client_id: str, actor: Actor, now: datetime, overlap: timedelta, *, revoke_tokens: bool = False
) -> Rotated:
    """A new secret; the current one keeps working for `overlap` (one previous secret at a time: a second rotation
    within the overlap ends the first's at once). Tokens stay valid unless `revoke_tokens`."""
    async with in_transaction() as conn:
        client = await _locked(conn, client_id, actor)
        if client.disabled_at is not None:
            raise ClientRevoked(f"the client {client_id} is revoked; its secret is not rotated")
        secret, hashed = new_secret()
        keep_previous = overlap > timedelta(0)
        client.previous_secret_sha256 = client.secret_sha256 if keep_previous else None
        client.previous_secret_until = now + overlap if keep_previous else None
        client.secret_sha256 = hashed
        client.secret_rotated_at = now
        fields = ["secret_sha256", "previous_secret_sha256", "previous_secret_until", "secret_rotated_at"]
        if revoke_tokens:
            client.token_generation += 1
            fields.append("token_generation")
        await client.save(using_db=conn, update_fields=fields)
        detail = {"previous_secret_valid_until": _iso(client.previous_secret_until), "revoke_tokens": revoke_tokens}
        await _audit(conn, now, actor, "client_rotate_secret", client, detail)
    return Rotated(describe(client), secret)


async def set_scopes(client_id: str, scopes: str, actor: Actor, now: datetime) -> dict[str, Any]:
    """The client's scopes become `scopes` (space-separated): new tokens get only these at once, and a token
    carrying one taken away is refused."""
    try:
        granted = parse_scopes(scopes)
    except ValueError as exc:
        raise InvalidRequest(str(exc), parameter="scopes") from None
    if not granted:
        raise InvalidRequest("give the client at least one scope", parameter="scopes")
    async with in_transaction() as conn:
        client = await _locked(conn, client_id, actor)
        if client.disabled_at is not None:
            raise ClientRevoked(f"the client {client_id} is revoked; its scopes do not change")
        before = client.scopes.split()
        if actor.type == "client" and actor.id == client_id and "admin" in before and "admin" not in granted:
            raise OwnClient("this client cannot take the admin scope away from itself")
        client.scopes = " ".join(granted)
        await client.save(using_db=conn, update_fields=["scopes"])
        await _audit(conn, now, actor, "client_set_scopes", client, {"before": before, "after": granted})
    return describe(client)


async def _locked(conn: BaseDBAsyncClient, client_id: str, actor: Actor) -> ApiClient:
    """The client, read after the transaction moved the version on: the write serialises changes to clients (on
    SQLite it takes the database's write lock; on PostgreSQL it locks the version row), so the read is current."""
    if len(client_id) > column_length(ApiClient, "client_id") or not client_id.isprintable():
        raise UnknownClient("no API client has this id", client_id=client_id[:64])  # and none could
    await touch_clients(conn)
    client = await ApiClient.filter(client_id=client_id).using_db(conn).first()
    if client is None:
        raise UnknownClient(f"no API client has the id {client_id!r}", client_id=client_id[:64])
    return client


async def _audit(
    conn: BaseDBAsyncClient, now: datetime, actor: Actor, action: str, client: ApiClient, detail: dict[str, Any]
) -> None:
    await AccessLog.create(
        using_db=conn,
        at=now,
        actor_type=actor.type,
        actor_id=actor.id[:128],
        action=action,
        detail={"client_id": client.client_id, "name": client.name, **detail},
    )
    log.info("%s %s by %s %s", action, client.client_id, actor.type, actor.id)


def _iso(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if value is not None else None
