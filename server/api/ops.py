"""Operations endpoints: liveness, readiness (the database answers, the disk has room), problem type
documentation, the OpenAPI document (built once by the app factory from every endpoint it routes)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from server.api.gauges import Gauges
from server.api.readiness import readiness
from server.errors import ConsentError
from server.errors import NotFound as NotFoundError
from server.middleware.metrics import Registry
from server.services import services_of


async def healthz(request: Request) -> JSONResponse:
    """The process is alive."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Ready when the database answers and every data directory has free space and is writable
    (`server.api.readiness`); otherwise 503, with what failed under `checks`."""
    ready, checks = await readiness(services_of(request).settings)
    status = "ready" if ready else "unavailable"
    return JSONResponse({"status": status, "checks": checks}, status_code=200 if ready else 503)


async def metrics(request: Request) -> PlainTextResponse:
    """Prometheus text exposition: this process's request counts and latencies, then the installation's gauges
    (`server.api.gauges`)."""
    registry: Registry = request.app.state.metrics
    gauges: Gauges = request.app.state.gauges
    return PlainTextResponse(registry.render() + await gauges.render(), media_type="text/plain; version=0.0.4")


async def openapi(request: Request) -> JSONResponse:
    """This document."""
    document: dict[str, object] = request.app.state.openapi
    return JSONResponse(document)


def problem_types() -> dict[str, type[ConsentError]]:
    """Every problem `type` the service can answer with, by slug: every `ConsentError` the running app has loaded
    (the app factory imports every feature, so the API's, the banner's, the desk's and the preference center's).
    Where two share a slug, the documented one explains it."""
    found: dict[str, type[ConsentError]] = {}
    pending: list[type[ConsentError]] = [ConsentError]
    while pending:
        error = pending.pop(0)
        pending.extend(error.__subclasses__())
        known = found.get(error.slug)
        if known is None or (not (known.__doc__ or "").strip() and (error.__doc__ or "").strip()):
            found[error.slug] = error
    return found


async def problem_type(request: Request) -> Response:
    """Human-readable documentation of a problem `type`."""
    slug = request.path_params["slug"]
    error = problem_types().get(slug)
    if error is not None:
        doc = (error.__doc__ or "").strip()
        return PlainTextResponse(f"{error.title}\n\nHTTP status {error.status}.\n{doc}\n")
    extra = {"not-found", "method-not-allowed", "http-error", "internal-error"}
    if slug in extra:
        return PlainTextResponse(f"{slug}\n")
    raise NotFoundError("no such problem type")
