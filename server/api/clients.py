"""`/v1/clients/...`: an admin client lists the API clients, revokes one, rotates its secret, sets its scopes
(`server.auth.lifecycle`; the command line's `clients` verbs do the same). Every change is in the access log with
the calling client as the actor."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from server.api.schemas import RotateIn, ScopesIn
from server.auth.lifecycle import Actor, list_clients, revoke, rotate_secret, set_scopes
from server.kernel.bodies import read_json
from server.services import services_of

# A secret is in some answers, and a client list names every integration: no cache keeps either.
_NO_STORE = {"Cache-Control": "no-store"}


def _json(data: Any) -> Response:
    return Response(orjson.dumps(data), media_type="application/json", headers=_NO_STORE)


def _actor(request: Request) -> Actor:
    return Actor("client", request.state.access.client_id)


async def clients_list(request: Request) -> Response:
    """Every API client, revoked ones included (never a secret nor its hash)."""
    return _json({"clients": await list_clients()})


async def client_revoke(request: Request) -> Response:
    """Revoke the client: no token is issued to it again, and every server refuses its tokens within a second.
    Final; revoking a revoked client answers it unchanged. A client cannot revoke itself (409 own-client)."""
    services = services_of(request)
    return _json(await revoke(request.path_params["client_id"], _actor(request), services.clock()))


async def client_rotate_secret(request: Request) -> Response:
    """A new secret, in this answer only; the previous one keeps working for CLIENT_SECRET_OVERLAP_S. Tokens stay
    valid unless `revoke_tokens` is true (send `{}` for the defaults)."""
    services = services_of(request)
    body = await read_json(request, RotateIn)
    overlap = timedelta(seconds=services.settings.client_secret_overlap_s)
    rotated = await rotate_secret(
        request.path_params["client_id"], _actor(request), services.clock(), overlap, revoke_tokens=body.revoke_tokens
    )
    return _json({**rotated.client, "client_secret": rotated.client_secret})


async def client_scopes(request: Request) -> Response:
    """Replace the client's scopes: new tokens get only these at once; a token carrying a scope taken away is
    refused within a second. An admin client cannot take `admin` away from itself (409 own-client)."""
    services = services_of(request)
    body = await read_json(request, ScopesIn)
    client_id = request.path_params["client_id"]
    return _json(await set_scopes(client_id, " ".join(body.scopes), _actor(request), services.clock()))
