"""Public discovery documents: JWKS and OAuth2 authorization server metadata (RFC 8414)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from server.services import services_of
from server.settings import SCOPES


async def jwks(request: Request) -> JSONResponse:
    """Every signing key, old ones included, so that anything signed before a rotation still verifies."""
    services = services_of(request)
    return JSONResponse(services.keys.jwks(), headers={"Cache-Control": "public, max-age=300"})


async def oauth_metadata(request: Request) -> JSONResponse:
    services = services_of(request)
    issuer = services.settings.issuer
    return JSONResponse(
        {
            "issuer": issuer,
            "token_endpoint": f"{issuer}/oauth/token",
            "jwks_uri": f"{issuer}/.well-known/jwks.json",
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "scopes_supported": list(SCOPES),
            "response_types_supported": [],  # no authorization endpoint: client credentials only
        }
    )
