"""CORS for the public banner endpoints: only a site's exact origins get `Access-Control-Allow-Origin`.

Answers always carry `Vary: Origin`, so a shared cache never hands one origin's answer to another. No credentials
are allowed: the banner's calls carry no cookie of ours, only the visitor's random consent id in the body.
"""

from __future__ import annotations

from collections.abc import Collection

from starlette.requests import Request

from server.banner.errors import OriginNotAllowed, OriginRequired

ALLOWED_HEADERS = "Content-Type, Sec-GPC"
PREFLIGHT_MAX_AGE = "7200"  # Chromium caps the preflight cache at 2 hours


def origin_of(request: Request) -> str | None:
    return request.headers.get("origin") or None


def cors_headers(origin: str | None, allowed: Collection[str]) -> dict[str, str]:
    headers = {"Vary": "Origin"}
    if origin is not None and origin in allowed:
        headers["Access-Control-Allow-Origin"] = origin
        # Not a CORS-safelisted header: exposed so that the banner waits as long as a 429 or 503 asks.
        headers["Access-Control-Expose-Headers"] = "Retry-After"
    return headers


def require_origin(origin: str | None, allowed: Collection[str]) -> str:
    """The request's Origin if it is allowed; else a domain error (400 without one, 403 for another origin)."""
    if origin is None:
        raise OriginRequired("the banner endpoints answer browsers, which send an Origin header")
    if origin not in allowed:
        raise OriginNotAllowed(f"origin {origin[:100]!r} is not an origin of this site", origin=origin[:100])
    return origin


def preflight_headers(origin: str, methods: str) -> dict[str, str]:
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Methods": methods,
        "Access-Control-Allow-Headers": ALLOWED_HEADERS,
        "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
        "Vary": "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
    }
