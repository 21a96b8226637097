"""Every route is declared with its auth rule in `server.app.ENDPOINTS`, enforced, documented and logged
without personal data."""

from __future__ import annotations

import base64
import importlib
import importlib.util
import logging
import re
from collections.abc import Callable
from typing import Any

import pytest
from starlette.routing import Route
from starlette.testclient import TestClient

from server.app import ENDPOINTS
from server.kernel.endpoints import LINK_TOKEN, METRICS, PUBLIC, Endpoint, is_oauth, staff
from server.logs import JsonFormatter
from server.settings import SCOPES
from server.staff.roles import PERMISSIONS
from tests.helpers.api import bearer, record

SCOPED = [ep for ep in ENDPOINTS if is_oauth(ep.auth)]
OPEN = [ep for ep in ENDPOINTS if ep.auth == PUBLIC]


def _url(endpoint: Endpoint) -> str:
    """A concrete URL for the route: every path parameter is "x"."""
    return re.sub(r"\{[^}]+\}", "x", endpoint.path)


def _label(endpoint: Endpoint) -> str:
    return f"{endpoint.method} {endpoint.path}"


def test_every_auth_rule_is_known() -> None:
    """A misspelt scope would lock every caller out (or, with a lax guard, let every caller in)."""
    assert SCOPED, "no scoped endpoint: the checks below would be vacuous"
    for endpoint in ENDPOINTS:
        known = {PUBLIC, LINK_TOKEN, METRICS, *SCOPES, *(staff(permission) for permission in PERMISSIONS)}
        assert endpoint.auth in known, (_label(endpoint), endpoint.auth)
    pairs = [(ep.path, ep.method) for ep in ENDPOINTS]
    assert len(pairs) == len(set(pairs)), "an endpoint is declared twice"


def test_scoped_routes_need_a_token_with_their_scope(client: TestClient) -> None:
    """RFC 6750 3: 401 without a token, 403 insufficient_scope with a token lacking exactly the required scope."""
    failures: list[str] = []
    for endpoint in SCOPED:
        url = _url(endpoint)
        anonymous = client.request(endpoint.method, url)
        if anonymous.status_code != 401 or not anonymous.headers.get("www-authenticate", "").startswith("Bearer"):
            failures.append(f"{_label(endpoint)} without a token: {anonymous.status_code}")
        if endpoint.method == "GET":  # HEAD is routed with GET (RFC 9110 9.3.2) and goes through the same guard
            head = client.head(url)
            if head.status_code != 401:
                failures.append(f"HEAD {endpoint.path} without a token: {head.status_code}")
        others = " ".join(scope for scope in SCOPES if scope != endpoint.auth)
        lacking = client.request(endpoint.method, url, headers=bearer(client, others))
        challenge = lacking.headers.get("www-authenticate", "")
        if (
            lacking.status_code != 403
            or 'error="insufficient_scope"' not in challenge
            or f'scope="{endpoint.auth}"' not in challenge
        ):
            failures.append(
                f"{_label(endpoint)} with every scope but {endpoint.auth}: {lacking.status_code} {challenge}"
            )
    assert not failures, "\n".join(failures)


def test_public_routes_answer_without_a_token(client: TestClient) -> None:
    failures: list[str] = []
    for endpoint in OPEN:
        response = client.request(endpoint.method, _url(endpoint))
        if response.status_code in (401, 403) or response.status_code >= 500:
            failures.append(f"{_label(endpoint)}: {response.status_code} {response.text[:100]}")
    assert not failures, "\n".join(failures)
    for endpoint in ENDPOINTS:
        if endpoint.auth == LINK_TOKEN:  # checked by the handler: refused or not found, never a crash
            assert client.request(endpoint.method, _url(endpoint)).status_code < 500, _label(endpoint)


def test_nothing_is_routed_that_is_not_declared(client: TestClient) -> None:
    routed: set[tuple[str, str]] = set()
    for route in client.app.routes:  # type: ignore[attr-defined]
        assert isinstance(route, Route), f"{route!r} is not a plain declared route"
        methods = set(route.methods or ())
        assert methods, f"{route.path} answers every method"
        if "GET" in methods:
            methods.discard("HEAD")  # Starlette adds HEAD to every GET route (RFC 9110 9.3.2)
        routed |= {(route.path, method) for method in methods}
    declared = {(ep.path, ep.method) for ep in ENDPOINTS}
    assert routed == declared, {"routed, not declared": routed - declared, "declared, not routed": declared - routed}


# --- the OpenAPI document -------------------------------------------------------------------------------------------


def _check_structure(document: dict[str, Any]) -> None:
    """What the OpenAPI 3.1 schema requires of the parts this service uses (used with or without a validator)."""
    assert re.fullmatch(r"3\.1\.\d+", document["openapi"]), document["openapi"]
    assert document["info"]["title"] and document["info"]["version"]
    schemes = document["components"]["securitySchemes"]
    operation_ids: list[str] = []
    for path, item in document["paths"].items():
        assert path.startswith("/"), path
        templated = set(re.findall(r"\{([^}]+)\}", path))
        for method, operation in item.items():
            assert method in {"get", "put", "post", "delete", "options", "head", "patch", "trace"}, method
            operation_ids.append(operation["operationId"])
            assert operation["responses"], (path, method)
            for status in operation["responses"]:
                assert re.fullmatch(r"[1-5](\d\d|XX)|default", status), (path, method, status)
                assert "description" in operation["responses"][status], (path, method, status)
            path_params = {p["name"] for p in operation["parameters"] if p["in"] == "path"}
            assert path_params == templated, (path, method, path_params)  # OAS 3.1 4.8.12.1: each template named
            for parameter in operation["parameters"]:
                assert parameter["in"] in {"path", "query", "header", "cookie"}
                if parameter["in"] == "path":
                    assert parameter["required"] is True, (path, parameter["name"])
            for requirement in operation.get("security", []):
                for scheme in requirement:
                    assert scheme in schemes, (path, method, scheme)
    assert len(operation_ids) == len(set(operation_ids)), "operationId must be unique"
    # every local $ref resolves
    for ref in re.findall(r"'\$ref': '([^']+)'", repr(document)):
        node: Any = document
        assert ref.startswith("#/"), ref
        for part in ref[2:].split("/"):
            node = node[part]


def test_openapi_is_valid_31_and_describes_every_route(client: TestClient) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    _check_structure(document)
    if importlib.util.find_spec("openapi_spec_validator") is not None:
        validator: Any = importlib.import_module("openapi_spec_validator")
        validator.validate(document)  # raises on any violation of the OpenAPI 3.1 schema

    described = {(path, method.upper()) for path, item in document["paths"].items() for method in item}
    assert described == {(ep.path, ep.method) for ep in ENDPOINTS if ep.in_schema}
    flows = document["components"]["securitySchemes"]["oauth2"]["flows"]["clientCredentials"]
    for endpoint in ENDPOINTS:
        operation = document["paths"][endpoint.path][endpoint.method.lower()]
        if endpoint.auth == METRICS:
            assert operation["security"] == [{"metricsToken": []}], _label(endpoint)
        elif not is_oauth(endpoint.auth):
            assert operation["security"] == [], _label(endpoint)
        else:
            assert operation["security"] == [{"oauth2": [endpoint.auth]}], _label(endpoint)
            assert endpoint.auth in flows["scopes"], _label(endpoint)
            assert {"401", "403"} <= set(operation["responses"]), _label(endpoint)


# --- request ids and the access log ---------------------------------------------------------------------------------


def test_every_answer_carries_a_request_id(client: TestClient, auth: dict[str, str]) -> None:
    answers = [
        client.get("/healthz"),
        client.get("/nope"),
        client.get("/v1/subjects/x/consents"),
        client.get("/v1/subjects/nobody/consents", headers=auth),
        record(client, auth, "cust-id", [("offers", "email", "grant")]),
    ]
    ids = [answer.headers.get("x-request-id") for answer in answers]
    assert all(ids), ids
    assert len(set(ids)) == len(ids), "request ids are unique"
    # a well-formed incoming id is kept (to follow a request across services); anything else is replaced
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123_DEF.456"}).headers["x-request-id"] == (
        "abc-123_DEF.456"
    )
    for hostile in ("short", "a" * 65, "bad id with spaces", "<script>alert(1)</script>", "../../../etc/passwd"):
        echoed = client.get("/healthz", headers={"X-Request-ID": hostile}).headers["x-request-id"]
        assert echoed and echoed != hostile, hostile


def test_access_log_names_the_route_not_the_ref_nor_the_ip(
    client: TestClient, auth: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """Invariant 9 (docs/design.md): subject refs are personal data and stay out of the logs, as do IP addresses."""
    caplog.set_level(logging.INFO, logger="server.access")
    ref = "secret-ref-123"
    written = record(client, auth, ref, [("offers", "email", "grant")], evidence={"ip": "203.0.113.7"})
    assert written.status_code == 201
    read = client.get(f"/v1/subjects/{ref}/consents?at=2026-01-01T00:00:00Z", headers=auth)
    assert read.status_code == 200

    formatter = JsonFormatter()
    lines = {
        record.__dict__.get("request_id"): formatter.format(record)
        for record in caplog.records
        if record.name == "server.access"
    }
    client_ip = "testclient"  # the peer address the TestClient puts in scope["client"] (its default)
    for answer in (written, read):
        line = lines[answer.headers["x-request-id"]]
        assert '"route":"/v1/subjects/{ref}/consents"' in line, line
        assert ref not in line, line
        assert client_ip not in line and "203.0.113" not in line, line
        assert "2026-01-01" not in line, "the query string is not logged"
        assert '"status":201' in line or '"status":200' in line, line


def test_metrics_count_requests_by_route_template(client: TestClient, auth: dict[str, str]) -> None:
    client.get("/v1/subjects/secret-ref-9/consents", headers=auth)
    body = client.get("/metrics").text
    assert 'http_requests_total{method="GET",route="/v1/subjects/{ref}/consents",status="404"} 1' in body
    assert "secret-ref-9" not in body
    assert 'http_request_duration_seconds_bucket{method="GET",route="/v1/subjects/{ref}/consents",le="+Inf"} 1' in body


def test_the_statuses_the_service_answers_with_are_in_the_openapi_document(
    client: TestClient, auth: dict[str, str]
) -> None:
    """An integrator codes against /openapi.json: a status the service answers with, and which the document does not
    list for that operation, is a surprise in production. Each request below really gets its status here."""
    record(client, auth, "cust-doc", [("offers", "email", "grant")])
    document = client.get("/openapi.json").json()["paths"]
    too_many = {"checks": [{"subject": "s", "purpose": "offers", "channel": "email"}] * 10_001}
    basic = {"Authorization": "Basic " + base64.b64encode(b"cl_nobody:wrong").decode()}
    grant = {"grant_type": "client_credentials"}
    cases: list[tuple[str, str, Callable[[], Any], int]] = [
        ("get", "/v1/subjects/{ref}/events", lambda: client.get("/v1/subjects/nobody/events", headers=auth), 404),
        ("get", "/v1/subjects/{ref}/proof", lambda: client.get("/v1/subjects/nobody/proof", headers=auth), 404),
        ("get", "/v1/subjects/{ref}/receipts", lambda: client.get("/v1/subjects/nobody/receipts", headers=auth), 404),
        ("get", "/v1/ledger/checkpoints/{size}", lambda: client.get("/v1/ledger/checkpoints/5"), 404),
        ("get", "/policies/{document}/{version}/{lang}", lambda: client.get("/policies/privacy-policy/9/en"), 404),
        ("get", "/problems/{slug}", lambda: client.get("/problems/nope"), 404),
        (
            "post",
            "/v1/subjects/{ref}/consents",
            lambda: client.post(
                "/v1/subjects/x/consents", content=b"{", headers={**auth, "Content-Type": "application/json"}
            ),
            400,
        ),
        ("post", "/v1/consents/check", lambda: client.post("/v1/consents/check", json=too_many, headers=auth), 413),
        ("post", "/oauth/token", lambda: client.post("/oauth/token", data={"grant_type": "password"}), 400),
        ("post", "/oauth/token", lambda: client.post("/oauth/token", data=grant, headers=basic), 401),
        (
            "get",
            "/v1/subjects/{ref}/events",
            lambda: client.get("/v1/subjects/cust-doc/events?limit=0", headers=auth),
            422,
        ),
        ("get", "/console", lambda: client.get("/console", follow_redirects=False), 303),
        ("get", "/preferences", lambda: client.get("/preferences?token=nope"), 403),
        ("get", "/dsr/export/{token}", lambda: client.get("/dsr/export/not-a-link"), 404),
    ]
    missing = []
    for method, path, call, status in cases:
        response = call()
        assert response.status_code == status, (method, path, response.status_code, response.text[:200])
        if str(status) not in document[path][method]["responses"]:
            missing.append(f"{method.upper()} {path}: {status}")
    assert missing == []
    limit = next(p for p in document["/v1/subjects/{ref}/events"]["get"]["parameters"] if p["name"] == "limit")
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 1000)
