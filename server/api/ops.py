"""Operations endpoints: liveness, readiness (the database answers), problem type documentation."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from server.banner.errors import BANNER_ERRORS
from server.db import connection
from server.errors import ALL_ERRORS
from server.errors import NotFound as NotFoundError


async def healthz(request: Request) -> JSONResponse:
    """The process is alive."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """The database answers a query."""
    try:
        await connection().execute_query("SELECT 1")
    except Exception as exc:  # any driver failure means "not ready"
        return JSONResponse({"status": "unavailable", "database": type(exc).__name__}, status_code=503)
    return JSONResponse({"status": "ready", "database": "ok"})


async def problem_type(request: Request) -> Response:
    """Human-readable documentation of a problem `type`."""
    slug = request.path_params["slug"]
    for error in (*ALL_ERRORS, *BANNER_ERRORS):
        if error.slug == slug:
            doc = (error.__doc__ or "").strip()
            return PlainTextResponse(f"{error.title}\n\nHTTP status {error.status}.\n{doc}\n")
    extra = {"not-found", "method-not-allowed", "http-error", "internal-error"}
    if slug in extra:
        return PlainTextResponse(f"{slug}\n")
    raise NotFoundError("no such problem type")
