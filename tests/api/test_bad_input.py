"""Hostile and malformed input: always a 4xx problem+json (RFC 9457), never a 500, and nothing is written."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from starlette.testclient import TestClient

from server.models import ConsentEvent, ConsentState, Subject
from tests.helpers.api import record
from tests.helpers.app import run
from tests.helpers.paths import REPO

LIMIT = 1024 * 1024  # MAX_BODY_BYTES default (README, Settings)
GRANT = {"purpose": "offers", "channel": "email", "action": "grant"}
POLICY = {"document": "privacy-policy", "version": "2", "lang": "fr"}
JSON = "application/json"


async def _counts() -> tuple[int, int, int]:
    return await Subject.all().count(), await ConsentEvent.all().count(), await ConsentState.all().count()


def _body(**changes: Any) -> dict[str, Any]:
    return {"policy": dict(POLICY), "decisions": [dict(GRANT)], **changes}


def _post(client: TestClient, auth: dict[str, str], ref: str, content: Any, content_type: str | None = JSON) -> Any:
    headers = dict(auth)
    if content_type is not None:
        headers["Content-Type"] = content_type
    return client.post(f"/v1/subjects/{ref}/consents", content=content, headers=headers)


def _problems(response: Any, label: str, status: int | None = None, type_: str | None = None) -> list[str]:
    """What is wrong with `response` as an RFC 9457 refusal (an empty list when it is one)."""
    found: list[str] = []
    code = response.status_code
    if not 400 <= code < 500 or (status is not None and code != status):
        found.append(f"{label}: status {code} (expected {status or '4xx'}): {response.text[:200]}")
        return found
    if response.headers.get("content-type") != "application/problem+json":
        found.append(f"{label}: content-type {response.headers.get('content-type')!r}")
        return found
    try:
        body = response.json()
    except ValueError:
        return [*found, f"{label}: body is not JSON: {response.text[:100]!r}"]
    if not isinstance(body, dict):
        return [*found, f"{label}: body is not an object"]
    missing = [key for key in ("type", "title", "status", "detail") if not body.get(key)]
    if missing:
        found.append(f"{label}: problem members missing: {missing}")
    if body.get("status") != code:
        found.append(f"{label}: problem status {body.get('status')} != HTTP status {code}")
    if type_ is not None and body.get("type") != type_:
        found.append(f"{label}: type {body.get('type')!r}, expected {type_!r}")
    return found


def _padded(size: int) -> bytes:
    """A valid request body of exactly `size` bytes: JSON followed by insignificant whitespace (RFC 8259 2)."""
    body = json.dumps(_body()).encode()
    return body + b" " * (size - len(body))


def _chunks(data: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def _still_works(client: TestClient, auth: dict[str, str]) -> None:
    """The server is not wedged: a valid call right after the abuse is recorded and read back."""
    response = record(client, auth, "after-the-storm", [("offers", "email", "grant")])
    assert response.status_code == 201, response.text
    assert client.get("/v1/subjects/after-the-storm/events", headers=auth).json()["events"][0]["seq"] == 1


# --- bodies ---------------------------------------------------------------------------------------------------------


def test_malformed_bodies_are_refused_and_write_nothing(client: TestClient, auth: dict[str, str]) -> None:
    malformed = "/problems/malformed-body"
    invalid = "/problems/invalid-request"
    decisions_101 = _body(decisions=[dict(GRANT) for _ in range(101)])
    cases: list[tuple[str, Any, str | None, str]] = [
        ("truncated JSON", b'{"policy": {"document": ', JSON, malformed),
        ("not JSON at all", b"decisions=grant", JSON, malformed),
        ("invalid UTF-8", b'{"policy": "\xff\xfe"}', JSON, malformed),
        ("NaN", b'{"policy": NaN}', JSON, malformed),
        ("deeply nested", b"[" * 100_000, JSON, malformed),
        ("empty body", b"", JSON, malformed),
        ("text/plain", json.dumps(_body()).encode(), "text/plain", malformed),
        ("form content type", json.dumps(_body()).encode(), "application/x-www-form-urlencoded", malformed),
        ("no content type", json.dumps(_body()).encode(), None, malformed),
        ("array", json.dumps([_body()]).encode(), JSON, invalid),
        ("null", b"null", JSON, invalid),
        ("decisions is a string", _body(decisions="grant"), JSON, invalid),
        ("action is a number", _body(decisions=[{**GRANT, "action": 1}]), JSON, invalid),
        ("version is a number", _body(policy={**POLICY, "version": 2}), JSON, invalid),
        ("purpose is a number", _body(decisions=[{**GRANT, "purpose": 7}]), JSON, invalid),
        ("gpc is the string 'true'", _body(evidence={"gpc": "true"}), JSON, invalid),
        ("unknown top-level field", _body(admin=True), JSON, invalid),
        ("unknown field in a decision", _body(decisions=[{**GRANT, "note": "x"}]), JSON, invalid),
        ("unknown field in policy", _body(policy={**POLICY, "sha256": "0" * 64}), JSON, invalid),
        ("unknown field in evidence", _body(evidence={"ip": "203.0.113.7", "mac": "x"}), JSON, invalid),
        ("no decisions", _body(decisions=[]), JSON, invalid),
        ("101 decisions", decisions_101, JSON, invalid),
        ("missing policy", {"decisions": [GRANT]}, JSON, invalid),
        ("lang with a trailing newline", _body(policy={**POLICY, "lang": "fr\n"}), JSON, invalid),
        ("purpose with a trailing newline", _body(decisions=[{**GRANT, "purpose": "offers\n"}]), JSON, invalid),
        ("unknown action", _body(decisions=[{**GRANT, "action": "GRANT"}]), JSON, invalid),
        (  # two accounts of what the person was shown
            "a snapshot and another's hash",
            _body(ui_snapshot={"kind": "form", "content": "x"}, ui_snapshot_sha256=hashlib.sha256(b"y").hexdigest()),
            JSON,
            invalid,
        ),
    ]
    failures: list[str] = []
    for label, payload, content_type, problem_type in cases:
        content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        response = _post(client, auth, "cust-b", content, content_type)
        failures += _problems(response, label, type_=problem_type)
    assert not failures, "\n".join(failures)
    assert run(client, _counts) == (0, 0, 0)
    _still_works(client, auth)


def test_bodies_over_the_limit_are_refused_with_413(client: TestClient, auth: dict[str, str]) -> None:
    """RFC 9110 15.5.14: 413 Content Too Large, with an honest Content-Length and with chunked transfer."""
    too_large = _padded(LIMIT + 1)
    assert len(too_large) == 1_048_577
    honest = _post(client, auth, "cust-big", too_large)
    assert "chunked" not in honest.request.headers.get("transfer-encoding", "")
    assert honest.request.headers["content-length"] == "1048577"
    chunked = _post(client, auth, "cust-big", _chunks(too_large))
    assert chunked.request.headers["transfer-encoding"] == "chunked"
    assert "content-length" not in chunked.request.headers
    failures = _problems(honest, "Content-Length", 413, "/problems/payload-too-large")
    failures += _problems(chunked, "chunked", 413, "/problems/payload-too-large")
    assert not failures, "\n".join(failures)
    assert run(client, _counts) == (0, 0, 0)
    # exactly at the limit is fine, both ways: the same body, one byte shorter
    at_limit = _padded(LIMIT)
    assert _post(client, auth, "cust-big", at_limit).status_code == 201
    assert _post(client, auth, "cust-big-2", _chunks(at_limit)).status_code == 201
    _still_works(client, auth)


# --- refs in the path -----------------------------------------------------------------------------------------------


def test_bad_refs_are_refused_and_write_nothing(client: TestClient, auth: dict[str, str]) -> None:
    """A ref is 1-255 characters, no control characters, not blank (the `ref` parameter in /openapi.json)."""
    cases = [
        ("10,000 characters", "r" * 10_000),
        ("256 characters", "r" * 256),
        ("NUL alone", "%00"),
        ("NUL inside", "cust%00x"),
        ("LF alone", "%0A"),
        ("LF inside", "cust%0Ax"),
        ("LF at the end", "cust%0A"),
        ("CR LF at the end", "cust%0D%0A"),
        ("US (0x1F) inside", "cust%1Fx"),
        ("US (0x1F) at the end", "cust%1F"),
        ("DEL at the end", "cust%7F"),
        ("spaces only", "%20%20%20"),
        ("tab only", "%09"),
    ]
    failures: list[str] = []
    for label, ref in cases:
        # NUL, which PostgreSQL cannot store, is refused before any handler, for every input (tests/faults/).
        expected = "/problems/unstorable-text" if "%00" in ref else "/problems/invalid-request"
        response = record(client, auth, ref, [("offers", "email", "grant")])
        failures += _problems(response, f"POST {label}", 422, expected)
        for suffix in ("consents", "events"):
            response = client.get(f"/v1/subjects/{ref}/{suffix}", headers=auth)
            failures += _problems(response, f"GET {suffix} {label}", 422, expected)
    refs = run(client, _subject_refs)
    assert not failures and not refs, "\n".join([*failures, f"subjects written: {refs!r}"])
    _still_works(client, auth)


async def _subject_refs() -> list[str]:
    return [str(ref) for ref in await Subject.all().values_list("ref", flat=True)]


def test_unusual_but_valid_refs_round_trip(client: TestClient, auth: dict[str, str]) -> None:
    """A ref may hold any printable character; the Location of a 201 (RFC 9110 10.2.2) is a URI reference
    (RFC 3986 4.1), so the ref is percent-encoded in it, and following it reads that subject's events."""
    failures: list[str] = []
    for ref in ("李小龍", "café-42", "a b", "a?b", "a#b", "100%"):
        response = client.post(f"/v1/subjects/{quote(ref, safe='')}/consents", json=_body(), headers=auth)
        if response.status_code != 201:
            failures.append(f"{ref!r}: POST answered {response.status_code}: {response.text[:120]}")
            continue
        assert response.json()["subject"] == ref
        location = response.headers["location"]
        if location != f"/v1/subjects/{quote(ref, safe='')}/events":
            failures.append(f"{ref!r}: Location {location!r} is not the percent-encoded events URL")
        events = client.get(location, headers=auth)
        if events.status_code != 200 or events.json().get("subject") != ref:
            failures.append(f"{ref!r}: GET Location answered {events.status_code}: {events.text[:120]}")
    assert not failures, "\n".join(failures)


def test_a_very_long_user_agent_is_refused_or_truncated(client: TestClient, auth: dict[str, str]) -> None:
    user_agent = "Mozilla/5.0 " + "x" * (2000 - 12)
    response = record(client, auth, "cust-ua", [("offers", "email", "grant")], evidence={"user_agent": user_agent})
    assert response.status_code != 500, response.text
    if response.status_code == 201:
        stored = client.get("/v1/subjects/cust-ua/events", headers=auth).json()["events"][0]["evidence"]
        assert len(stored.get("user_agent", "")) < len(user_agent)
    else:
        failures = _problems(response, "long user agent")
        assert not failures, "\n".join(failures)
        assert run(client, _counts) == (0, 0, 0)
    _still_works(client, auth)


# --- query parameters, unknown paths and methods --------------------------------------------------------------------


def test_bad_query_parameters_are_refused_with_422(client: TestClient, auth: dict[str, str]) -> None:
    assert record(client, auth, "cust-q", [("offers", "email", "grant")]).status_code == 201
    before = run(client, _counts)
    cases = [
        "/v1/subjects/cust-q/consents?at=not-a-date",
        "/v1/subjects/cust-q/consents?at=2026-13-01T00:00:00Z",
        "/v1/subjects/cust-q/consents?at=2026-10-01T11:00:00",  # no time zone
        "/v1/subjects/cust-q/events?limit=0",
        "/v1/subjects/cust-q/events?limit=100000",
        "/v1/subjects/cust-q/events?limit=-1",
        "/v1/subjects/cust-q/events?limit=ten",
        "/v1/subjects/cust-q/events?cursor=garbage",
        "/v1/subjects/cust-q/events?cursor=s-1",
    ]
    failures: list[str] = []
    for url in cases:
        failures += _problems(client.get(url, headers=auth), url, 422, "/problems/invalid-request")
    assert not failures, "\n".join(failures)
    assert run(client, _counts) == before
    _still_works(client, auth)


def test_out_of_range_query_values_are_not_server_errors(client: TestClient, auth: dict[str, str]) -> None:
    """Values that look like numbers or instants but overflow what the server can represent: a 4xx (or an answer),
    never a 500."""
    assert record(client, auth, "cust-r", [("offers", "email", "grant")]).status_code == 201
    cases = [
        "/v1/subjects/cust-r/consents?at=0001-01-01T00:00:00%2B01:00",  # before year 1 once in UTC
        "/v1/subjects/cust-r/consents?at=9999-12-31T23:59:59-01:00",  # after year 9999 once in UTC
        "/v1/subjects/cust-r/events?limit=%C2%B2",  # "²": str.isdigit() is true, int() refuses it
        "/v1/subjects/cust-r/events?limit=" + "0" * 5000 + "5",  # over int()'s 4300-digit limit
        "/v1/subjects/cust-r/events?cursor=s%C2%B2",
        "/v1/subjects/cust-r/events?cursor=s" + "9" * 30,  # beyond a 64-bit integer
        "/v1/subjects/cust-r/events?cursor=s" + "9" * 5000,
    ]
    failures: list[str] = []
    for url in cases:
        response = client.get(url, headers=auth)
        if response.status_code >= 400:
            failures += _problems(response, url[:80])
    assert not failures, "\n".join(failures)
    _still_works(client, auth)
    # In range, with leading zeros: the number it says
    page = client.get("/v1/subjects/cust-r/events?limit=00001", headers=auth)
    assert page.status_code == 200 and len(page.json()["events"]) == 1, page.text


def test_unknown_paths_and_methods_are_problems(client: TestClient, auth: dict[str, str]) -> None:
    failures: list[str] = []
    for path in ("/nope", "/v1", "/v1/subjects", "/v1/subjects/x", "/v1/subjects/x/consents/extra", "/v2/policies"):
        failures += _problems(client.get(path, headers=auth), f"GET {path}", 404, "/problems/not-found")
    for method in ("DELETE", "PUT", "PATCH"):
        response = client.request(method, "/v1/subjects/x/consents", headers=auth, json=_body())
        failures += _problems(response, f"{method} consents", 405, "/problems/method-not-allowed")
        assert "allow" in response.headers, method  # RFC 9110 15.5.6
    for method, path in (("POST", "/v1/subjects/x/events"), ("DELETE", "/v1/subjects/x/events"), ("PUT", "/healthz")):
        response = client.request(method, path, headers=auth)
        failures += _problems(response, f"{method} {path}", 405, "/problems/method-not-allowed")
    assert not failures, "\n".join(failures)
    assert run(client, _counts) == (0, 0, 0)
    _still_works(client, auth)


def test_405_lists_every_method_of_the_resource(client: TestClient, auth: dict[str, str]) -> None:
    """RFC 9110 15.5.6: the Allow header of a 405 lists the target resource's supported methods, all of them."""
    response = client.delete("/v1/subjects/x/consents", headers=auth)
    assert response.status_code == 405
    allowed = {method.strip() for method in response.headers["allow"].split(",")}
    assert {"GET", "POST"} <= allowed, response.headers["allow"]


def test_every_problem_type_the_service_answers_with_is_documented(client: TestClient) -> None:
    """RFC 9457 3.1.1: a problem's `type` URI, dereferenced, documents it. Every `slug` declared in the source (the
    API's, the banner's, the desk's, the preference center's errors; found here by reading the source, not from the
    server's own list) answers at /problems/{slug} with its title and HTTP status."""
    sources = [*REPO.glob("server/**/*.py"), *REPO.glob("preference_center/**/*.py")]
    declared = {slug for path in sources for slug in re.findall(r'^    slug = "([a-z0-9-]+)"$', path.read_text(), re.M)}
    assert {"not-found", "suppressed-contact", "link-token-refused", "stale-breach", "origin-not-allowed"} <= declared
    undocumented = []
    for slug in sorted(declared):
        response = client.get(f"/problems/{slug}")
        if response.status_code != 200 or "HTTP status " not in response.text:
            undocumented.append(f"{slug}: {response.status_code} {response.text[:80]!r}")
    assert undocumented == []
