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

from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULTS = [(b"x-content-type-options", b"nosniff"), (b"cache-control", b"no-store")]


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, hsts_max_age_s: int) -> None:
        self.app = app
        hsts = [(b"strict-transport-security", b"max-age=%d; includeSubDomains" % hsts_max_age_s)]
        self.https_headers = DEFAULTS + (hsts if hsts_max_age_s else [])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        added = self.https_headers if served_over_https(scope) else DEFAULTS

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers += [(name, value) for name, value in added if name not in present]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def served_over_https(scope: Scope) -> bool:
    """The client reached us over TLS (directly, or through a trusted proxy that says so)."""
    return scope.get("scheme") in ("https", "wss")
