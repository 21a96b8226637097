"""The HTTP kernel routes what the app factory gathers: each rule through the guard of its kind, development pages
only outside production."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import pytest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.testclient import TestClient

from server.app import ENDPOINTS, create_app, routed_endpoints
from server.kernel.endpoints import PUBLIC, SCOPE, Endpoint, Guard, Handler, build_routes, rule_kind, staff
from server.settings import Settings
from tests.helpers.clock import Clock

DEVELOPMENT = [ep for ep in ENDPOINTS if ep.development_only]


async def _hello(request: Request) -> Response:
    return PlainTextResponse("hello")


def test_the_demo_and_development_pages_are_not_routed_in_production(settings: Settings, clock: Clock) -> None:
    assert {ep.path for ep in DEVELOPMENT} >= {"/demo", "/dev/mail", "/dev/mail/{name}", "/demo/banner"}
    production = settings.with_overrides(environment="production")
    assert routed_endpoints(production) == [ep for ep in ENDPOINTS if not ep.development_only]
    with TestClient(create_app(production, clock=clock), raise_server_exceptions=False) as client:
        for endpoint in DEVELOPMENT:
            url = re.sub(r"\{[^}]+\}", "x", endpoint.path)
            response = client.request(endpoint.method, url)
            assert response.status_code == 404, endpoint.path
            assert response.json()["type"] == "/problems/not-found"
        documented = client.get("/openapi.json").json()["paths"]
        assert not {ep.path for ep in DEVELOPMENT} & set(documented)
    with TestClient(create_app(settings, clock=clock)) as client:
        assert client.get("/dev/mail").status_code == 200


def test_a_rule_whose_kind_has_no_guard_is_refused_when_routes_are_built() -> None:
    """An endpoint is never routed unguarded because nobody supplied its guard."""
    scoped = Endpoint("/x", "GET", _hello, "consent:check", "x", "test")
    console = Endpoint("/y", "GET", _hello, staff("customer.view"), "y", "test")
    with pytest.raises(LookupError, match=r"consent:check"):
        build_routes([scoped], {})
    with pytest.raises(LookupError, match=r"staff:customer\.view"):
        build_routes([console], {SCOPE: lambda handler, rule: _hello})
    assert len(build_routes([Endpoint("/z", "GET", _hello, PUBLIC, "z", "test")], {})) == 1


def test_each_guard_gets_the_rule_the_route_declares() -> None:
    seen: list[tuple[str, str]] = []

    def guard(kind: str) -> Guard:
        def wrap(handler: Callable[..., Awaitable[Response]], rule: str) -> Handler:
            seen.append((kind, rule))
            return _hello

        return wrap

    endpoints = [
        Endpoint("/a", "GET", _hello, "consent:read", "a", "test"),
        Endpoint("/b", "GET", _hello, staff("audit.view"), "b", "test"),
    ]
    build_routes(endpoints, {"scope": guard("scope"), "staff": guard("staff")})
    assert seen == [("scope", "consent:read"), ("staff", "audit.view")]
    customer_pages = [ep for ep in ENDPOINTS if ep.path.startswith("/console/customers")]
    assert customer_pages and {rule_kind(ep.auth) for ep in customer_pages} == {"staff"}
