"""`POST /oauth/token`: OAuth2 client credentials (RFC 6749 4.4), client auth by Basic or in the body.

Errors here follow RFC 6749 5.2 (`{"error": ...}`), which is what OAuth2 client libraries expect.
"""

from __future__ import annotations

import base64
from urllib.parse import unquote

import orjson
from starlette.requests import Request
from starlette.responses import Response

from server.auth.clients import UnknownScope, authenticate, parse_scopes
from server.errors import ConsentError, PayloadTooLarge
from server.kernel.bodies import read_form
from server.services import services_of

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _error(status: int, error: str, description: str, basic: bool = False) -> Response:
    headers = dict(_NO_STORE)
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="oauth"' if basic else 'Bearer realm="oauth"'
    body = {"error": error, "error_description": description}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


async def token(request: Request) -> Response:
    """Exchange client credentials for a short-lived JWT access token."""
    services = services_of(request)
    try:
        form = await read_form(request)
    except PayloadTooLarge as exc:  # 413 stays a 413, in OAuth's form
        return _error(413, "invalid_request", exc.detail)
    except ConsentError as exc:  # not a form, not UTF-8: still an OAuth client's error (RFC 6749 5.2)
        return _error(400, "invalid_request", exc.detail)
    if form.get("grant_type") != "client_credentials":
        return _error(400, "unsupported_grant_type", "only grant_type=client_credentials is supported")
    header = request.headers.get("authorization", "")
    basic = header.lower().startswith("basic ")
    if basic:
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
            client_id, _, secret = decoded.partition(":")
            client_id, secret = unquote(client_id), unquote(secret)
        except ValueError:  # not base64 (binascii.Error), non-ASCII input, or not UTF-8 (UnicodeDecodeError)
            return _error(401, "invalid_client", "malformed Basic credentials", basic=True)
        if "client_secret" in form:
            return _error(400, "invalid_request", "use one client authentication method, not two")
    else:
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
    if not client_id or not secret:
        return _error(401, "invalid_client", "client authentication is required", basic=True)
    client = await authenticate(client_id, secret, services.clock())
    if client is None:
        return _error(401, "invalid_client", "unknown client or wrong secret", basic=basic)
    allowed = client.scopes.split()
    try:
        # An empty (or blank) scope is no scope asked: the client's own (RFC 6749 3.3), not a token for nothing.
        requested = parse_scopes(form["scope"]) if form.get("scope", "").strip() else allowed
    except UnknownScope as exc:
        return _error(400, "invalid_scope", str(exc))
    if not set(requested) <= set(allowed):
        return _error(400, "invalid_scope", f"this client may request only: {' '.join(allowed)}")
    access_token, expires_in = services.tokens.issue(client.client_id, requested, client.token_generation)
    body = {
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": expires_in,
        "scope": " ".join(requested),
    }
    return Response(orjson.dumps(body), media_type="application/json", headers=_NO_STORE)
