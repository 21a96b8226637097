"""OAuth2 clients: creation with a random secret, stored as its SHA-256, and authentication (the current secret, or
the previous one during a rotation's overlap)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from server.db import placeholders
from server.models import ApiClient
from server.settings import SCOPES


class ClientRefused(ValueError):
    """A client that could not be used as asked: the operator is told why, nothing is created."""


class UnknownScope(ClientRefused):
    pass


NAME_LENGTH = 128  # api_clients.name
_NO_SECRET = "0" * 64


@dataclass(frozen=True)
class NewClient:
    client_id: str
    client_secret: str
    name: str
    scopes: str


def parse_scopes(value: str) -> list[str]:
    scopes = value.split()
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise UnknownScope(f"unknown scope(s) {unknown}; known scopes are {' '.join(SCOPES)}")
    return list(dict.fromkeys(scopes))


def new_secret() -> tuple[str, str]:
    """A fresh secret and the SHA-256 stored for it."""
    secret = secrets.token_urlsafe(32)
    return secret, digest(secret)


async def touch_clients(conn: BaseDBAsyncClient) -> None:
    """Move `api_clients_version` on, in the transaction of a change to `api_clients`: every server process
    reloads its view of the clients at its next poll (`server.auth.revocation`). On SQLite this first write also
    takes the write lock, so what the transaction reads next is the last commit."""
    marker = placeholders(conn, 1)[0]
    await conn.execute_query(
        f"INSERT INTO api_clients_version (id, version) VALUES ({marker}, 1) "
        "ON CONFLICT (id) DO UPDATE SET version = api_clients_version.version + 1",
        [1],
    )


async def create_client(name: str, scopes: str) -> NewClient:
    """A new client with `scopes` (at least one: a client without any could call nothing), named for people (the
    console's access log shows it)."""
    name = name.strip()
    if not name or len(name) > NAME_LENGTH or not name.isprintable():
        raise ClientRefused(f"the name must be 1 to {NAME_LENGTH} printable characters")
    granted = " ".join(parse_scopes(scopes))
    if not granted:
        raise ClientRefused(f"give the client at least one scope of: {' '.join(SCOPES)}")
    client_id = "cl_" + secrets.token_hex(12)
    secret, hashed = new_secret()
    async with in_transaction() as conn:
        await touch_clients(conn)
        await ApiClient.create(using_db=conn, client_id=client_id, name=name, secret_sha256=hashed, scopes=granted)
    return NewClient(client_id, secret, name, granted)


async def authenticate(client_id: str, secret: str, now: datetime) -> ApiClient | None:
    """The client if `secret` is its current one, or its previous one before `previous_secret_until`; None for an
    unknown or revoked client or a wrong secret."""
    client = await ApiClient.get_or_none(client_id=client_id)
    offered = digest(secret)
    # Compare a digest either way, and both of them, so an unknown id costs the same as a wrong secret.
    current = client.secret_sha256 if client else _NO_SECRET
    previous = (client.previous_secret_sha256 if client else None) or _NO_SECRET
    in_overlap = client is not None and client.previous_secret_until is not None and now < client.previous_secret_until
    matches_current = hmac.compare_digest(current, offered)
    matches_previous = hmac.compare_digest(previous, offered) and in_overlap
    if client is None or client.disabled_at is not None or not (matches_current or matches_previous):
        return None
    return client


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
