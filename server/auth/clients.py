"""OAuth2 clients: creation with a random secret, stored as its SHA-256, and authentication."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from server.models import ApiClient
from server.settings import SCOPES


class ClientRefused(ValueError):
    """A client that could not be used as asked: the operator is told why, nothing is created."""


class UnknownScope(ClientRefused):
    pass


NAME_LENGTH = 128  # api_clients.name


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
    secret = secrets.token_urlsafe(32)
    await ApiClient.create(client_id=client_id, name=name, secret_sha256=_digest(secret), scopes=granted)
    return NewClient(client_id, secret, name, granted)


async def authenticate(client_id: str, secret: str) -> ApiClient | None:
    client = await ApiClient.get_or_none(client_id=client_id)
    # Compare a digest either way so an unknown id costs the same as a wrong secret.
    expected = client.secret_sha256 if client else "0" * 64
    if not hmac.compare_digest(expected, _digest(secret)) or client is None or client.disabled_at is not None:
        return None
    return client


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
