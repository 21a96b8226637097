"""The public record endpoint under hostile input: a problem+json refusal, never a 500, and nothing written."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from server.app import create_app
from server.models import ConsentEvent, Subject, UISnapshot
from server.settings import Settings
from tests.helpers.app import run
from tests.helpers.banner import ORIGIN, VISITOR, choice, ledger, post
from tests.helpers.busy import sqlite_write_lock_held
from tests.helpers.clock import Clock

JSON = {"Content-Type": "application/json"}


async def _written() -> tuple[int, int, int]:
    return await Subject.all().count(), await ConsentEvent.all().count(), await UISnapshot.all().count()


def _refusal(response: Any, status: int, slug: str) -> list[str]:
    """What is wrong with `response` as the expected RFC 9457 refusal (empty when right)."""
    wrong = []
    if response.status_code != status:
        wrong.append(f"status {response.status_code}, expected {status}: {response.text[:200]}")
    if response.headers.get("content-type") != "application/problem+json":
        wrong.append(f"content-type {response.headers.get('content-type')}")
    else:
        body = response.json()
        if body.get("type") != f"/problems/{slug}" or body.get("status") != response.status_code:
            wrong.append(f"problem {body}")
    return wrong


@pytest.fixture
def visitor(settings: Settings, clock: Clock) -> Iterator[TestClient]:
    with TestClient(create_app(settings, clock=clock), raise_server_exceptions=False, client=VISITOR) as client:
        yield client


def test_every_refusal_is_a_problem_and_writes_nothing(visitor: TestClient) -> None:
    valid = choice(visitor, "accept_all", ["preferences", "analytics", "marketing"])
    raw = json.dumps(valid).encode()

    def changed(**changes: Any) -> Any:
        return lambda: post(visitor, {**valid, **changes})

    cases: list[tuple[str, Any, int, str]] = [
        ("another origin", lambda: post(visitor, valid, origin="https://evil.example"), 403, "origin-not-allowed"),
        (
            "a look-alike origin",
            lambda: post(visitor, valid, origin=ORIGIN + ".evil.example"),
            403,
            "origin-not-allowed",
        ),
        ("the origin with a path", lambda: post(visitor, valid, origin=ORIGIN + "/"), 403, "origin-not-allowed"),
        ("no origin", lambda: post(visitor, valid, origin=None), 400, "origin-required"),
        (
            "a 5 KB body",
            lambda: visitor.post("/v1/cookie-consents", content=raw + b" " * 5000, headers={"Origin": ORIGIN, **JSON}),
            413,
            "payload-too-large",
        ),
        (
            "a body larger than it says",
            lambda: visitor.post(
                "/v1/cookie-consents",
                content=iter([raw, b" " * 5000]),
                headers={"Origin": ORIGIN, **JSON},
            ),
            413,
            "payload-too-large",
        ),
        (
            "malformed JSON",
            lambda: visitor.post("/v1/cookie-consents", content=raw[:-3], headers={"Origin": ORIGIN, **JSON}),
            400,
            "malformed-body",
        ),
        (
            "not JSON at all",
            lambda: visitor.post("/v1/cookie-consents", content=b"\xff\xfe<x>", headers={"Origin": ORIGIN, **JSON}),
            400,
            "malformed-body",
        ),
        (
            "a form instead of JSON",
            lambda: visitor.post("/v1/cookie-consents", data={"site": "demo"}, headers={"Origin": ORIGIN}),
            400,
            "malformed-body",
        ),
        ("a JSON array", lambda: post(visitor, [valid]), 422, "invalid-request"),
        ("an unknown field", changed(admin=True), 422, "invalid-request"),
        (
            "a consent id not from the banner",
            changed(consent_id="cust-42"),
            422,
            "invalid-request",
        ),
        ("an unknown method", changed(method="scroll"), 422, "invalid-request"),
        ("an unknown category", changed(categories=["social"]), 422, "invalid-request"),
        ("a string for a list", changed(categories="analytics"), 422, "invalid-request"),
        ("an unknown site", changed(site="other"), 422, "unknown-site"),
        ("a language the site lacks", changed(lang="de"), 422, "invalid-request"),
        (
            "an unpublished policy version",
            changed(policy_version="9"),
            422,
            "unknown-policy-version",
        ),
        (
            "the hash of another text",
            changed(text_sha256="0" * 64),
            422,
            "banner-text-mismatch",
        ),
        (
            "the hash of the other language",
            changed(lang="en"),
            422,
            "banner-text-mismatch",
        ),
        (
            "reject all that accepts",
            changed(method="reject_all"),
            422,
            "invalid-request",
        ),
        (
            "closing that accepts",
            changed(method="dismiss", categories=["analytics"]),
            422,
            "invalid-request",
        ),
        (
            "accept all that refuses",
            changed(categories=["analytics"]),
            422,
            "invalid-request",
        ),
        (
            "GPC without the signal",
            changed(method="gpc", categories=[]),
            422,
            "invalid-request",
        ),
    ]
    problems = []
    for label, send, status, slug in cases:
        response = send()
        problems += [f"{label}: {wrong}" for wrong in _refusal(response, status, slug)]
    assert problems == []
    assert run(visitor, _written) == (0, 0, 0)
    # The server is not wedged: the valid choice is recorded right after.
    assert post(visitor, valid).status_code == 200
    assert len(ledger(visitor)) == 3


def test_refusals_to_an_allowed_site_carry_cors_headers_so_the_banner_can_read_them(visitor: TestClient) -> None:
    response = post(visitor, {**choice(visitor, "save", []), "text_sha256": "0" * 64})
    assert response.status_code == 422
    assert response.headers["access-control-allow-origin"] == ORIGIN
    refused = post(visitor, choice(visitor, "save", []), origin="https://evil.example")
    assert "access-control-allow-origin" not in refused.headers
    assert "Origin" in refused.headers["vary"]


@pytest.mark.parametrize("backend", ["sqlite"])  # SQLite's one write lock; PostgreSQL waits for the row
def test_a_choice_met_by_a_busy_database_is_a_503_the_banner_can_read(visitor: TestClient, settings: Settings) -> None:
    """The banner keeps a choice it could not record and sends it again later: it must be able to read why."""
    body = choice(visitor, "save", [])
    before = run(visitor, _written)
    with sqlite_write_lock_held(visitor, settings):
        response = post(visitor, body)
    assert _refusal(response, 503, "database-busy") == []
    assert response.headers["access-control-allow-origin"] == ORIGIN and response.headers["retry-after"] == "1"
    assert run(visitor, _written) == before
    assert post(visitor, body).status_code == 200


def test_a_nul_refused_before_the_handler_carries_the_banner_cors_headers(visitor: TestClient) -> None:
    """A NUL in the path, query or a header is refused by the kernel before the banner's handler runs: the answer
    still carries the CORS headers the handler would give, so the banner can read it; nothing is written."""
    before = run(visitor, _written)
    body = json.dumps(choice(visitor, "save", []))
    sent = [
        ("record, query", visitor.post("/v1/cookie-consents?x=%00", content=body, headers={**JSON, "Origin": ORIGIN})),
        (
            "record, header",
            visitor.post("/v1/cookie-consents", content=body, headers={**JSON, "Origin": ORIGIN, "X-A": "\x00"}),
        ),
        ("config, query", visitor.get("/v1/banner/config?site=demo&lang=%00", headers={"Origin": ORIGIN})),
        ("config preflight", visitor.options("/v1/banner/config?site=demo%00", headers={"Origin": ORIGIN})),
        ("record preflight", visitor.options("/v1/cookie-consents?x=%00", headers={"Origin": ORIGIN})),
    ]
    wrong = []
    for what, response in sent:
        problems = _refusal(response, 422, "unstorable-text")
        if response.headers.get("access-control-allow-origin") != ORIGIN or "Origin" not in response.headers["vary"]:
            problems.append(f"CORS headers {dict(response.headers)}")
        if problems:
            wrong.append((what, problems))
    assert wrong == []
    foreign = visitor.post(
        "/v1/cookie-consents?x=%00", content=body, headers={**JSON, "Origin": "https://evil.example"}
    )
    assert _refusal(foreign, 422, "unstorable-text") == []
    assert "access-control-allow-origin" not in foreign.headers
    assert run(visitor, _written) == before
