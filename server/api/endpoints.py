"""Endpoint declarations: every route states its auth rule, so none is reachable by accident.

`auth` is `public`, `link-token` (a signed link in the URL, checked by the handler) or an OAuth2 scope the bearer
token must carry. The OpenAPI document and the route-coverage tests are built from these declarations.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.errors import AuthenticationRequired, InsufficientScope

Handler = Callable[[Request], Awaitable[Response]]
PUBLIC = "public"
LINK_TOKEN = "link-token"  # noqa: S105 (an auth rule name, not a secret)


@dataclass(frozen=True)
class Param:
    name: str
    where: str  # "path" | "query"
    description: str
    required: bool = False
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})


@dataclass(frozen=True)
class Endpoint:
    path: str
    method: str
    handler: Handler
    auth: str
    summary: str
    tag: str
    params: Sequence[Param] = ()
    body: type[BaseModel] | None = None
    body_media_type: str = "application/json"
    response: type[BaseModel] | None = None
    response_media_type: str = "application/json"
    in_schema: bool = True
    # Statuses this endpoint answers with beyond those every endpoint of its kind documents (server.api.openapi),
    # with what each means; a 2xx here replaces the default success status.
    responses: Mapping[str, str] = field(default_factory=dict)
    error_media_type: str | None = None  # where errors are not problem+json nor the response's own type (a page)

    @property
    def operation_id(self) -> str:
        return f"{self.method.lower()}_{self.path.strip('/').replace('/', '_').replace('{', '').replace('}', '')}"


def build_routes(endpoints: Sequence[Endpoint]) -> list[Route]:
    """One route per path, dispatching on the method, so a 405 lists every method of the resource (RFC 9110)."""
    by_path: dict[str, dict[str, Handler]] = {}
    for endpoint in endpoints:
        by_path.setdefault(endpoint.path, {})[endpoint.method] = _guard(endpoint.handler, endpoint.auth)
    routes = []
    for path, handlers in by_path.items():
        if len(handlers) == 1:
            ((method, handler),) = handlers.items()
            routes.append(Route(path, handler, methods=[method]))
        else:
            routes.append(Route(path, _dispatch(handlers), methods=list(handlers)))
    return routes


def _dispatch(handlers: dict[str, Handler]) -> Handler:
    async def dispatch(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        return await handlers[method](request)

    return dispatch


def _guard(handler: Handler, auth: str) -> Handler:
    if auth in (PUBLIC, LINK_TOKEN):
        return handler

    async def guarded(request: Request) -> Response:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationRequired("a bearer access token is required", error=None)
        access = request.app.state.services.tokens.verify(token.strip())
        if auth not in access.scopes:
            raise InsufficientScope(f"this endpoint requires the scope {auth!r}", scope=auth)
        request.state.access = access
        return await handler(request)

    guarded.__name__ = handler.__name__
    guarded.__doc__ = handler.__doc__
    return guarded
