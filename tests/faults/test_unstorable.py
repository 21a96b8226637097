"""Text PostgreSQL cannot store (NUL, U+0000; lone surrogates) is refused with a 4xx on every route of
`server.app.ENDPOINTS`, in every kind of input, on both databases alike: never a 500.

The cases are generated from the route list, so a route added later is covered without a new test: its path
parameters, a query string, a JSON body, a form body, as an API client (every scope), a signed-in admin (with the
form's CSRF token) and an anonymous visitor would send them.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from starlette.testclient import TestClient

from server.app import ENDPOINTS
from server.kernel.endpoints import Endpoint, is_oauth, rule_kind
from tests.helpers.api import bearer
from tests.helpers.console import sign_in

UNSTORABLE = "/problems/unstorable-text"
PARAM = re.compile(r"{(\w+)(?::\w+)?}")
WRITES = {"POST", "PUT", "PATCH", "DELETE"}


def _path(endpoint: Endpoint, value: str) -> str:
    return PARAM.sub(value, endpoint.path)


def _send(client: TestClient, endpoint: Endpoint, path: str, **kwargs: Any) -> Any:
    return client.request(endpoint.method, path, follow_redirects=False, **kwargs)


def _problem_type(answer: Any) -> str | None:
    if not answer.headers.get("content-type", "").startswith("application/problem+json"):
        return None
    return str(answer.json().get("type"))


@pytest.fixture
def credentials(client: TestClient) -> dict[str, str]:
    """Headers that pass every guard: a bearer token with every scope, and an admin's session (cookie kept by the
    client) with its CSRF token."""
    token = bearer(client)
    csrf = sign_in(client, "admin")
    assert csrf is not None
    return {**token, "X-CSRF-Token": csrf, "Origin": "http://testserver"}


def test_a_nul_in_any_path_parameter_is_a_422_on_every_route(client: TestClient, credentials: dict[str, str]) -> None:
    wrong = []
    with_params = [ep for ep in ENDPOINTS if PARAM.search(ep.path)]
    assert len(with_params) > 20
    for endpoint in with_params:
        answer = _send(client, endpoint, _path(endpoint, "x%00y"), headers=credentials)
        if answer.status_code != 422 or _problem_type(answer) != UNSTORABLE:
            wrong.append((endpoint.method, endpoint.path, answer.status_code, answer.text[:120]))
    assert wrong == [], "\n".join(map(str, wrong))


def test_a_nul_in_the_query_string_is_a_422_on_every_route(client: TestClient, credentials: dict[str, str]) -> None:
    wrong = []
    for endpoint in ENDPOINTS:
        names = [p.name for p in endpoint.params if p.where == "query"] or ["q"]
        for name in names:
            path = f"{_path(endpoint, 'x')}?{name}=a%00b"
            answer = _send(client, endpoint, path, headers=credentials)
            if answer.status_code != 422 or _problem_type(answer) != UNSTORABLE:
                wrong.append((endpoint.method, endpoint.path, name, answer.status_code, answer.text[:120]))
    assert wrong == [], "\n".join(map(str, wrong))


def test_a_nul_in_a_header_is_a_422_on_every_route(client: TestClient, credentials: dict[str, str]) -> None:
    """Headers the service keeps as data (the user agent and origin as evidence, a request id in the logs). A real
    HTTP server refuses a NUL in a header before the app sees it; the app refuses it too, for any ASGI server."""
    wrong = []
    for endpoint in ENDPOINTS:
        answer = _send(client, endpoint, _path(endpoint, "x"), headers={**credentials, "User-Agent": "a\x00b"})
        if answer.status_code != 422 or _problem_type(answer) != UNSTORABLE:
            wrong.append((endpoint.method, endpoint.path, answer.status_code, answer.text[:120]))
    assert wrong == [], "\n".join(map(str, wrong))


def _body_endpoints() -> list[Endpoint]:
    return [ep for ep in ENDPOINTS if ep.method in WRITES]


@pytest.mark.parametrize(
    "body",
    [
        '{"subject": "a\\u0000b", "decisions": [], "x": "\\u0000"}',  # an escaped NUL
        '{"x": "\\ud800"}',  # a lone surrogate: not valid JSON for orjson
        '{"x": "a\x00b"}',  # a raw NUL byte: not valid JSON either
    ],
    ids=["escaped-nul", "lone-surrogate", "raw-nul"],
)
def test_unstorable_text_in_a_json_body_is_a_4xx_on_every_writing_route(
    client: TestClient, credentials: dict[str, str], body: str
) -> None:
    wrong = []
    for endpoint in _body_endpoints():
        headers = {**credentials, "Content-Type": "application/json"}
        answer = _send(client, endpoint, _path(endpoint, "x"), content=body.encode(), headers=headers)
        if answer.status_code >= 500:  # a route that reads no JSON may go on without it: a sign-out's 303
            wrong.append((endpoint.method, endpoint.path, answer.status_code, answer.text[:120]))
        # Where the route reads JSON, its refusal says why (a scope route reads its body after the guard).
        if is_oauth(endpoint.auth) and endpoint.body is not None and endpoint.body_media_type == "application/json":
            expected = UNSTORABLE if "u0000" in body else "/problems/malformed-body"
            if _problem_type(answer) != expected:
                wrong.append((endpoint.method, endpoint.path, "type", _problem_type(answer)))
    assert wrong == [], "\n".join(map(str, wrong))


@pytest.mark.parametrize("multipart", [False, True], ids=["urlencoded", "multipart"])
def test_a_nul_in_a_form_field_is_a_4xx_on_every_writing_route(
    client: TestClient, credentials: dict[str, str], multipart: bool
) -> None:
    wrong = []
    fields = {"email": "a\x00b@example.com", "ref": "a\x00b", "kind": "erasure", "grant_type": "client_credentials"}
    for endpoint in _body_endpoints():
        path = _path(endpoint, "x")
        if multipart:
            answer = _send(client, endpoint, path, headers=credentials, files={k: (None, v) for k, v in fields.items()})
        else:
            answer = _send(client, endpoint, path, headers=credentials, data=fields)
        if answer.status_code >= 500:
            wrong.append((endpoint.method, endpoint.path, answer.status_code, answer.text[:120]))
        # The desk reads every POST's form in its guard, and answers a refusal in its own page (once the role may
        # use the route at all: an admin records no decision for a customer, a 403 before the form is read).
        denied = answer.headers.get("x-desk-denied") == "role"
        if rule_kind(endpoint.auth) == "staff" and not multipart and not denied and answer.status_code != 422:
            wrong.append((endpoint.method, endpoint.path, "desk", answer.status_code))
    assert wrong == [], "\n".join(map(str, wrong))


def test_a_nul_in_a_stream_line_is_an_error_line_and_the_stream_goes_on(
    client: TestClient, credentials: dict[str, str]
) -> None:
    lines = b'{"subject": "a\\u0000b", "purpose": "newsletter", "channel": "email"}\n'
    lines += b'{"subject": "ok", "purpose": "newsletter", "channel": "email"}\n'
    answer = client.post(
        "/v1/consents/check/stream",
        content=lines,
        headers={**credentials, "Content-Type": "application/x-ndjson"},
    )
    assert answer.status_code == 200, answer.text
    first, second = (line for line in answer.text.splitlines() if line)
    assert '"error"' in first and "allowed" in second
