"""The banner's budgets: per consent id, with a generous ceiling per network that a NAT's visitors share, counted in
the shared store (the database, or Redis with REDIS_URL) and never in the way of a proof when the store is down."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from starlette.testclient import TestClient

from server.app import create_app
from server.models import ConsentEvent, Subject
from server.settings import Settings
from tests.helpers.app import run
from tests.helpers.banner import ORIGIN, VISITOR, choice, post
from tests.helpers.clock import Clock

REDIS_URL = "redis://127.0.0.1:6379/0"
MID_MINUTE = datetime(2026, 3, 2, 10, 15, 20, tzinfo=UTC)  # 20 s into a minute: no window boundary in a test


def consent_id(n: int) -> str:
    return f"ck_visitor{n:04d}" + "x" * 11


async def _written() -> tuple[int, int]:
    return await Subject.all().count(), await ConsentEvent.all().count()


@pytest.fixture
def pinned(clock: Clock) -> Clock:
    clock.set(MID_MINUTE)
    return clock


def visitor_client(settings: Settings, clock: Clock, **overrides: Any) -> Iterator[TestClient]:
    app = create_app(settings.with_overrides(**overrides), clock=clock)
    with TestClient(app, raise_server_exceptions=False, client=VISITOR) as client:
        yield client


def beside(client: TestClient, address: str) -> TestClient:
    """Another visitor's client on the same running app (its event loop, where Tortoise is open)."""
    other = TestClient(client.app, raise_server_exceptions=False, client=(address, 4000))
    other.portal = client.portal
    return other


@pytest.fixture
def visitor(settings: Settings, pinned: Clock) -> Iterator[TestClient]:
    yield from visitor_client(settings, pinned)


def test_forty_visitors_behind_one_address_are_all_recorded(visitor: TestClient) -> None:
    """One NAT or corporate proxy (one /24, one address even) in one minute, with the default settings."""
    body = choice(visitor, "reject_all", [])
    answers = [post(visitor, {**body, "consent_id": consent_id(n)}) for n in range(40)]
    assert [a.status_code for a in answers] == [200] * 40, [a.text for a in answers if a.status_code != 200][:1]
    assert run(visitor, _written)[0] == 40


def test_one_consent_id_flooding_is_refused_with_retry_after_and_writes_nothing(visitor: TestClient) -> None:
    body = choice(visitor, "reject_all", [])
    answers = [post(visitor, body) for _ in range(10)]  # BANNER_RATE_PER_CONSENT: 10 a minute
    assert [a.status_code for a in answers] == [200] * 10
    before = run(visitor, _written)
    refused = post(visitor, body)
    assert refused.status_code == 429 and refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"] == "/problems/too-many-requests"
    assert refused.headers["access-control-allow-origin"] == ORIGIN, "the banner must read the refusal"
    # The 11 attempts of this minute weigh 11 * (1 - f) in the next one: one more fits at f = 2/11, 40 + 11 s on.
    assert refused.headers["retry-after"] == "51"
    assert run(visitor, _written) == before
    assert post(visitor, {**body, "consent_id": consent_id(1)}).status_code == 200, "another visitor is not held"


def test_the_retry_after_is_when_the_sliding_window_lets_one_more_in(visitor: TestClient, pinned: Clock) -> None:
    body = choice(visitor, "reject_all", [])
    assert [post(visitor, body).status_code for _ in range(10)] == [200] * 10
    pinned.advance(seconds=60)  # the next minute, 20 s in: 10 * (1 - 1/3) = 6.7 of the last minute still count
    assert [post(visitor, body).status_code for _ in range(3)] == [200] * 3
    refused = post(visitor, body)  # 6.7 + 4 > 10; one more fits once 10 * (1 - f) + 4 + 1 <= 10, at f = 0.5: 10 s on
    assert (refused.status_code, refused.headers["retry-after"]) == (429, "10")
    pinned.advance(seconds=10)
    assert post(visitor, body).status_code == 200, "the banner sending again after Retry-After is recorded"


def test_the_network_ceiling_is_shared_by_its_addresses_and_no_other(settings: Settings, pinned: Clock) -> None:
    for client in visitor_client(settings, pinned, banner_rate_per_network=3):
        body = choice(client, "reject_all", [])
        assert [post(client, {**body, "consent_id": consent_id(n)}).status_code for n in range(3)] == [200] * 3
        refused = post(beside(client, "203.0.113.200"), {**body, "consent_id": consent_id(7)})
        assert refused.status_code == 429 and refused.json()["type"] == "/problems/too-many-requests"
        assert post(beside(client, "198.51.100.9"), {**body, "consent_id": consent_id(8)}).status_code == 200


def test_cookie_rate_per_minute_is_still_read_as_the_network_ceiling(settings: Settings, pinned: Clock) -> None:
    for client in visitor_client(settings, pinned, cookie_rate_per_minute=2):
        body = choice(client, "reject_all", [])
        statuses = [post(client, {**body, "consent_id": consent_id(n)}).status_code for n in range(3)]
        assert statuses == [200, 200, 429]


@pytest.mark.parametrize("backend", ["sqlite"])  # the store is Redis here, whatever the database
def test_with_redis_the_counts_are_kept_there(settings: Settings, pinned: Clock) -> None:
    # A fresh secret: the keys are digests under it, so this test's counters are its own in a shared Redis.
    fresh = {"redis_url": REDIS_URL, "secret_key": uuid.uuid4().hex * 2}
    for client in visitor_client(settings, pinned, **fresh):
        body = choice(client, "reject_all", [])
        assert [post(client, body).status_code for _ in range(11)] == [200] * 10 + [429]
        count = run(client, _rows_in_rate_limits)
        assert count == 0, "nothing counted in the database"
    # Another app process on the same Redis shares the budget.
    for client in visitor_client(settings, pinned, **fresh):
        assert post(client, body).status_code == 429


async def _rows_in_rate_limits() -> int:
    from tortoise import connections

    rows = await connections.get("default").execute_query_dict("SELECT COUNT(*) AS n FROM rate_limits")
    return int(rows[0]["n"])


@pytest.mark.parametrize("backend", ["sqlite"])
def test_an_unreachable_store_lets_every_choice_through_and_says_so(
    settings: Settings, pinned: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """A lost limit is better than a lost proof: Redis down, the choices are recorded, and the log says why."""
    down = {"redis_url": "redis://127.0.0.1:9/0"}  # the discard port: nothing listens
    for client in visitor_client(settings, pinned, **down):
        body = choice(client, "reject_all", [])
        with caplog.at_level(logging.WARNING, logger="server.limits"):
            assert [post(client, body).status_code for _ in range(12)] == [200] * 12
        assert run(client, _written)[1] >= 12
    assert any("rate limit store unavailable" in r.getMessage() for r in caplog.records)
