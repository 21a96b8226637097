"""Mapping errors to RFC 9457 problem+json responses (one place for the whole app)."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg
import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from tortoise.exceptions import BaseORMException

from server.db import send_again_error
from server.errors import SEND_AGAIN, AuthenticationRequired, ConsentError, InsufficientScope

log = logging.getLogger("server.errors")
MEDIA_TYPE = "application/problem+json"


def problem(
    status: int, slug: str, title: str, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> Response:
    body = {"type": f"/problems/{slug}", "title": title, "status": status, "detail": detail, **extra}
    return Response(orjson.dumps(body), status_code=status, media_type=MEDIA_TYPE, headers=headers)


async def consent_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ConsentError)
    headers: dict[str, str] = {}
    if isinstance(exc, AuthenticationRequired):
        # RFC 6750 3.1: no error code when the request carried no credentials at all.
        headers["WWW-Authenticate"] = (
            f'Bearer realm="consent", error="{exc.error}", error_description="{_quote(exc.detail)}"'
            if exc.error
            else 'Bearer realm="consent"'
        )
    elif isinstance(exc, InsufficientScope):
        headers["WWW-Authenticate"] = (
            f'Bearer realm="consent", error="insufficient_scope", scope="{exc.scope}", '
            f'error_description="{_quote(exc.detail)}"'
        )
    elif isinstance(exc, SEND_AGAIN) or getattr(exc, "retry_after", False):
        if isinstance(exc, SEND_AGAIN):
            page = _own_page(request, exc)
            if page is not None:
                return page
        headers["Retry-After"] = "1"
    return problem(exc.status, exc.slug, exc.title, exc.detail, headers, **exc.extensions)


# A feature's own page for "send it again" (a 503 the feature did not answer itself, such as a lost database
# met while reading a page): (path prefixes, renderer) pairs, which the app factory puts in `app.state`.
SendAgainPages = Sequence[tuple[tuple[str, ...], Callable[[Request, ConsentError], Response]]]


def _own_page(request: Request, exc: ConsentError) -> Response | None:
    """The page of the feature that serves the path, for a browser (HTML asked for, or an htmx request)."""
    wants_page = "text/html" in request.headers.get("accept", "") or request.headers.get("hx-request") == "true"
    if not wants_page:
        return None
    pages: SendAgainPages = getattr(request.app.state, "send_again_pages", ())
    path = request.url.path
    for prefixes, render in pages:
        if path.startswith(prefixes):
            return render(request, exc)
    return None


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    slug = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
    return problem(exc.status_code, slug, str(exc.detail), str(exc.detail), dict(exc.headers or {}))


async def server_error(request: Request, exc: Exception) -> Response:
    """Any error no other handler took: a 503 the client may send again when it means the database or the disk
    cannot be used right now (`send_again_error`, whatever wraps it), the 500 of a defect otherwise."""
    domain = send_again_error(exc)
    if domain is not None:
        log.warning("%s: %r", domain.slug, exc, extra={"request_id": getattr(request.state, "request_id", None)})
        return await consent_error(request, domain)
    log.exception("unhandled error", extra={"request_id": getattr(request.state, "request_id", None)})
    return problem(500, "internal-error", "Internal error", "the server failed; the request id is in the logs")


def _quote(value: str) -> str:
    return value.replace("\\", "").replace('"', "'")


EXCEPTION_HANDLERS = {
    ConsentError: consent_error,
    HTTPException: http_error,
    # Driver and I/O errors answered here rather than by Starlette's last-resort handler, which logs and raises the
    # error again after answering: a lost connection or a full disk is an answer (503), not a crash.
    BaseORMException: server_error,
    sqlite3.Error: server_error,
    asyncpg.PostgresError: server_error,
    asyncpg.InterfaceError: server_error,
    asyncpg.exceptions.InternalClientError: server_error,
    OSError: server_error,
    Exception: server_error,
}
