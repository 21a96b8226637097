"""Endpoint declarations: every route states its auth rule, and the guard that enforces it is chosen by that rule.

`auth` is one of:
- `public`: anyone;
- `link-token`: a signed link in the URL, checked by the handler (the link is the credential);
- `staff:<permission>`: a signed-in member of staff whose role has the permission (the console's guard);
- `metrics-token`: `Authorization: Bearer METRICS_TOKEN` (`token_guard`), the operator's scraper;
- any other value: an OAuth2 scope the bearer token must carry.

`build_routes` wraps each handler in the guard of its rule's kind, so the rule in the list is the rule enforced.
A write that takes an `Idempotency-Key` header says so (`idempotency`), and `build_routes` wraps its handler, inside
the guard, in the keyed transaction of `server.kernel.idempotency`.
The OpenAPI document and the route-coverage tests are built from these declarations.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.errors import AuthenticationRequired, ConsentError, InsufficientScope, NotFound, UnstorableText
from server.kernel.idempotency import OPTIONAL, REQUIRED, IdempotencyKeys
from server.kernel.unstorable import refuse_in_request

Handler = Callable[[Request], Awaitable[Response]]
# A guard turns a declared handler into a route handler that enforces `rule` (the part after `kind:`).
Guard = Callable[[Callable[..., Awaitable[Response]], str], Handler]
PUBLIC = "public"
LINK_TOKEN = "link-token"  # noqa: S105 (an auth rule name, not a secret)
STAFF = "staff"
SCOPE = "scope"
METRICS = "metrics-token"


def staff(permission: str) -> str:
    """The auth rule of a console route: a staff session whose role has `permission`."""
    return f"{STAFF}:{permission}"


def rule_kind(auth: str) -> str:
    """`public`, `link-token`, `metrics-token`, `staff` or `scope` (an OAuth2 scope)."""
    if auth in (PUBLIC, LINK_TOKEN, METRICS):
        return auth
    if auth.startswith(f"{STAFF}:"):
        return STAFF
    return SCOPE


def is_oauth(auth: str) -> bool:
    return rule_kind(auth) == SCOPE


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
    handler: Callable[..., Awaitable[Response]]  # a `Handler`; a staff route's takes the staff member too
    auth: str
    summary: str
    tag: str
    params: Sequence[Param] = ()
    body: type[BaseModel] | None = None
    body_media_type: str = "application/json"
    response: type[BaseModel] | None = None
    response_media_type: str = "application/json"
    in_schema: bool = True
    # Statuses this endpoint answers with beyond those every endpoint of its kind documents (server.kernel.openapi),
    # with what each means; a 2xx here replaces the default success status.
    responses: Mapping[str, str] = field(default_factory=dict)
    error_media_type: str | None = None  # where errors are not problem+json nor the response's own type (a page)
    development_only: bool = False  # demo and dev pages: not routed when ENVIRONMENT=production
    # `optional` or `required`: the write takes an `Idempotency-Key` header (server.kernel.idempotency); None: the
    # header is ignored (a read, or a POST that changes nothing, such as one that only signs a link).
    idempotency: str | None = None
    # How a refusal made before the handler runs (a NUL in the path, query string or a header) is answered, for
    # routes whose refusals carry headers of their own (the banner's CORS headers); None: the kernel's problem+json.
    refusal: Callable[[Request, ConsentError], Awaitable[Response]] | None = None

    @property
    def operation_id(self) -> str:
        return f"{self.method.lower()}_{self.path.strip('/').replace('/', '_').replace('{', '').replace('}', '')}"


def build_routes(
    endpoints: Sequence[Endpoint], guards: Mapping[str, Guard], keys: IdempotencyKeys | None = None
) -> list[Route]:
    """One route per path, dispatching on the method, so a 405 lists every method of the resource (RFC 9110).

    `guards` holds a guard for each rule kind the endpoints use besides `public` and `link-token` (`scope`,
    `staff`); an endpoint whose kind has none is refused here, at start-up, rather than routed unguarded. `keys`
    stores the answers of writes that take an `Idempotency-Key`; an endpoint declaring one needs it."""
    by_path: dict[str, dict[str, Handler]] = {}
    for endpoint in endpoints:
        by_path.setdefault(endpoint.path, {})[endpoint.method] = _guarded(endpoint, guards, keys)
    routes = []
    for path, handlers in by_path.items():
        if len(handlers) == 1:
            ((method, handler),) = handlers.items()
            routes.append(Route(path, handler, methods=[method]))
        else:
            routes.append(Route(path, _dispatch(handlers), methods=list(handlers)))
    return routes


def _guarded(endpoint: Endpoint, guards: Mapping[str, Guard], keys: IdempotencyKeys | None) -> Handler:
    return _storable_input(_with_guard(endpoint, guards, keys), endpoint.refusal)


def _storable_input(
    handler: Handler, refusal: Callable[[Request, ConsentError], Awaitable[Response]] | None = None
) -> Handler:
    """`handler` behind the refusal of a NUL in the path, query string or headers (server.kernel.unstorable), the
    same for every route and both databases; answered by `refusal` when the endpoint has one."""

    async def checked(request: Request) -> Response:
        try:
            refuse_in_request(request.scope)
        except UnstorableText as exc:
            if refusal is None:
                raise
            return await refusal(request, exc)
        return await handler(request)

    checked.__name__ = handler.__name__
    checked.__doc__ = handler.__doc__
    return checked


def _with_guard(endpoint: Endpoint, guards: Mapping[str, Guard], keys: IdempotencyKeys | None) -> Handler:
    handler: Handler = endpoint.handler
    if endpoint.idempotency is not None:
        if endpoint.idempotency not in (OPTIONAL, REQUIRED) or keys is None:
            raise LookupError(
                f"{endpoint.method} {endpoint.path}: idempotency {endpoint.idempotency!r} needs `optional` or "
                "`required` and a key store"
            )
        handler = keys.wrap(handler, endpoint.idempotency)  # inside the guard: the client is known
    kind = rule_kind(endpoint.auth)
    if kind in (PUBLIC, LINK_TOKEN):
        return handler
    guard = guards.get(kind)
    if guard is None:
        raise LookupError(f"{endpoint.method} {endpoint.path}: no guard for its auth rule {endpoint.auth!r}")
    rule = endpoint.auth.partition(":")[2] if kind == STAFF else endpoint.auth
    return guard(handler, rule)


def _dispatch(handlers: dict[str, Handler]) -> Handler:
    async def dispatch(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        return await handlers[method](request)

    return dispatch


class Access(Protocol):
    """What the scope guard needs of a verified bearer token."""

    @property
    def scopes(self) -> frozenset[str]: ...


def scope_guard(verify: Callable[[str], Access]) -> Guard:
    """The guard of OAuth2 routes: a bearer token (RFC 6750) that `verify` accepts and that carries the scope.
    The verified access is kept as `request.state.access` for the handler."""

    def guard(handler: Callable[..., Awaitable[Response]], scope: str) -> Handler:
        async def guarded(request: Request) -> Response:
            header = request.headers.get("authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise AuthenticationRequired("a bearer access token is required", error=None)
            access = verify(token.strip())
            if scope not in access.scopes:
                raise InsufficientScope(f"this endpoint requires the scope {scope!r}", scope=scope)
            request.state.access = access
            response: Response = await handler(request)
            return response

        guarded.__name__ = handler.__name__
        guarded.__doc__ = handler.__doc__
        return guarded

    return guard


def token_guard(secret: str | None, *, open_when_unset: bool) -> Guard:
    """The guard of a route for one operator's tool (`/metrics`): the bearer token `secret`, compared in constant
    time. Unset, the route is open when `open_when_unset` (development) and answers 404 otherwise (production):
    metrics name routes and rates, nothing a stranger should read."""

    def guard(handler: Callable[..., Awaitable[Response]], rule: str) -> Handler:
        async def guarded(request: Request) -> Response:
            if secret is None:
                if not open_when_unset:
                    raise NotFound(f"{request.url.path} is served only with a token: set METRICS_TOKEN")
            else:
                scheme, _, token = request.headers.get("authorization", "").partition(" ")
                if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), secret.encode()):
                    raise AuthenticationRequired("this endpoint requires the bearer token METRICS_TOKEN")
            response: Response = await handler(request)
            return response

        guarded.__name__ = handler.__name__
        guarded.__doc__ = handler.__doc__
        return guarded

    return guard
