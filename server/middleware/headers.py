"""Response headers every answer gets unless its handler set its own.

- `X-Content-Type-Options: nosniff` on every response: a JSON export or a problem is never run as a script or page.
- `Cache-Control: no-store` on every response that names no caching of its own. Personal data (subject routes,
  preference-center and console pages, exports, proof bundles, banner records) are never kept by a browser or a
  shared cache (GDPR 32(1)); the handlers of public, non-personal resources (policy texts, checkpoints, the banner
  script and configuration, signing keys, static assets) set a `Cache-Control` of their own, which is kept as is.
- `Strict-Transport-Security` on responses to requests served over https (`scope["scheme"]`, as rewritten by
  `server.middleware.proxy` for a trusted proxy): a browser that once reached the service over TLS never sends
  it a cookie or a link token in clear again (RFC 6797). Never over plain http, where it would mean nothing.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, hsts_max_age_s: int) -> None:
        self.app = app
        self.hsts = f"max-age={hsts_max_age_s}; includeSubDomains" if hsts_max_age_s else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        hsts = self.hsts if served_over_https(scope) else None

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("x-content-type-options", "nosniff")
                headers.setdefault("cache-control", "no-store")
                if hsts is not None:
                    headers.setdefault("strict-transport-security", hsts)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def served_over_https(scope: Scope) -> bool:
    """The client reached us over TLS (directly, or through a trusted proxy that says so)."""
    return scope.get("scheme") in ("https", "wss")
