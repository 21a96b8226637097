"""The shared limiter against its real stores: expired counters swept from the database, Redis keys that expire,
and what each rule answers when its store is unreachable."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis
from starlette.testclient import TestClient
from tortoise import connections

from server.app import create_app
from server.limits import Limiter, RedisStore, Rule
from server.optin.service import MAIL_RULE
from server.settings import Settings
from tests.helpers.app import run, services_of
from tests.helpers.clock import Clock

REDIS_URL = "redis://127.0.0.1:6379/0"
RULE = Rule("test", 2, 60)


@pytest.fixture
def client(settings: Settings, clock: Clock) -> Iterator[TestClient]:
    clock.set(datetime(2026, 3, 2, 10, 15, 20, tzinfo=UTC))
    with TestClient(create_app(settings, clock=clock)) as client:
        yield client


async def _keys() -> list[str]:
    rows = await connections.get("default").execute_query_dict("SELECT key FROM rate_limits ORDER BY key")
    return [str(r["key"]) for r in rows]


def test_counters_past_their_two_windows_are_swept(client: TestClient, clock: Clock) -> None:
    limiter = services_of(client).limiter

    async def hit(key: str) -> int | None:
        wait = await limiter.hit((RULE, key))
        await limiter.sweep()  # what each process's sweeping task does once a minute
        return wait

    assert [run(client, hit, "old"), run(client, hit, "old"), run(client, hit, "old")] == [None, None, 80]
    assert len(run(client, _keys)) == 1
    clock.advance(seconds=150)  # two windows later: the old counter can no longer weigh in
    assert run(client, hit, "new") is None
    keys = run(client, _keys)
    assert len(keys) == 1 and keys != [], "only the new counter is left"
    assert "old" not in keys[0] and "new" not in keys[0], "keys are digests, never what is counted"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_redis_counters_expire_after_their_two_windows(client: TestClient) -> None:
    limiter = Limiter(RedisStore(REDIS_URL), uuid.uuid4().hex, now=lambda: 1_000_020.0)

    async def scenario() -> tuple[list[int | None], list[int]]:
        waits = [await limiter.hit((RULE, "visitor")) for _ in range(3)]
        redis = Redis.from_url(REDIS_URL)
        names = [n async for n in redis.scan_iter(match=f"rl:{limiter._key_of(RULE, 'visitor')}:*")]
        ttls = [int(await redis.ttl(n)) for n in names]
        await redis.aclose()
        await limiter.aclose()
        return waits, ttls

    waits, ttls = run(client, scenario)
    assert waits == [None, None, 100]  # 3 * (1 - f) + 1 <= 2 at f = 2/3 of the next window
    assert len(ttls) == 1 and 0 < ttls[0] <= 120


@pytest.mark.parametrize("backend", ["sqlite"])
def test_an_unreachable_store_lets_the_banner_through_and_stops_mails(client: TestClient) -> None:
    limiter = Limiter(RedisStore("redis://127.0.0.1:9/0"), "secret")  # nothing listens on the discard port

    async def scenario() -> tuple[int | None, int | None]:
        banner = await limiter.hit((Rule("banner-consent", 1, 60), "ck"), (Rule("banner-network", 1, 60), "net"))
        mail = await limiter.hit((MAIL_RULE, "a-person"))
        await limiter.aclose()
        return banner, mail

    assert run(client, scenario) == (None, MAIL_RULE.window_s)


@pytest.mark.parametrize("backend", ["postgres"])
def test_the_counters_table_is_unlogged_on_postgres(client: TestClient) -> None:
    """Counters need no WAL: a crash empties the table, which only resets budgets."""

    async def persistence() -> str:
        rows = await connections.get("default").execute_query_dict(
            "SELECT relpersistence::text AS p FROM pg_class WHERE relname = 'rate_limits'"
        )
        return str(rows[0]["p"])

    assert run(client, persistence) == "u"
