"""Mapping errors to RFC 9457 problem+json responses (one place for the whole app)."""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

import asyncpg
import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from tortoise.exceptions import BaseORMException

from server.db import is_busy_error
from server.errors import SEND_AGAIN, AuthenticationRequired, ConsentError, DatabaseBusy, InsufficientScope

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
        headers["Retry-After"] = "1"
    return problem(exc.status, exc.slug, exc.title, exc.detail, headers, **exc.extensions)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    slug = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
    return problem(exc.status_code, slug, str(exc.detail), str(exc.detail), dict(exc.headers or {}))


async def server_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", extra={"request_id": getattr(request.state, "request_id", None)})
    return problem(500, "internal-error", "Internal error", "the server failed; the request id is in the logs")


async def database_error(request: Request, exc: Exception) -> Response:
    """A driver error: a 503 the client may retry when the database was busy (the transaction was rolled back),
    the 500 of any other failure otherwise."""
    if not is_busy_error(exc):
        return await server_error(request, exc)
    log.warning("database busy: %s", exc, extra={"request_id": getattr(request.state, "request_id", None)})
    return await consent_error(request, DatabaseBusy.now())


def _quote(value: str) -> str:
    return value.replace("\\", "").replace('"', "'")


EXCEPTION_HANDLERS = {
    ConsentError: consent_error,
    HTTPException: http_error,
    BaseORMException: database_error,
    sqlite3.Error: database_error,
    asyncpg.PostgresError: database_error,
    Exception: server_error,
}
