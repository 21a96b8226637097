"""Where the counters live: the service's database (default) or Redis (`REDIS_URL`).

Both count with one atomic operation per request, so every process behind a load balancer shares one budget:

- SQL: table `rate_limits` (migration 0017; UNLOGGED on PostgreSQL: counters need no WAL, crash recovery empties
  it, which only resets budgets). One `INSERT ... ON CONFLICT DO UPDATE SET hits = hits + 1 RETURNING` per request,
  for every key of the request at once, whose RETURNING also reads each key's previous window. PostgreSQL locks the
  row (keys are written in sorted order, so two requests never wait on each other in a cycle); SQLite runs it under
  its write lock. Rows whose two windows have passed are swept once a minute by each server process, in a task of
  its own started with the app (`Limiter.run_sweeps`): never from a request, whose transaction's connection a
  task started there would inherit.
- Redis (redis-py's asyncio client): one MULTI per request of INCR + EXPIRE of each current window and GET of the
  previous one. Connection and socket timeouts are short: a hung Redis costs a request at most that long.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from tortoise import connections

from server.db import is_postgres, placeholders

TABLE = "rate_limits"
SWEEP_EVERY_S = 60.0
REDIS_TIMEOUT_S = 0.25


@dataclass(frozen=True)
class Count:
    current: int  # hits in the current window, this one included
    previous: int  # hits in the window before


# (key, window_s, slot): slot is the window's index, floor(now / window_s).
Slot = tuple[str, int, int]


class Store(Protocol):
    async def incr(self, slots: Sequence[Slot], now: float) -> list[Count]:
        """Count one hit in each slot at `now` (the limiter's clock, seconds); the counts in the order given."""
        ...

    async def sweep(self, now: float) -> None:
        """Drop counters that can no longer weigh in at `now`."""
        ...

    async def aclose(self) -> None: ...


class SqlStore:
    """Counters in the service's own database, through Tortoise's connection (`server.db`)."""

    async def incr(self, slots: Sequence[Slot], now: float) -> list[Count]:
        conn = connections.get("default")
        ordered = sorted(set(slots))
        ph = placeholders(conn, 3 * len(ordered))
        values = ", ".join(f"({ph[3 * i]}, {ph[3 * i + 1]}, 1, {ph[3 * i + 2]})" for i in range(len(ordered)))
        args: list[object] = []
        for key, window, slot in ordered:
            args += [key, slot, (slot + 2) * window]
        # The previous slot of a key is the slot before in the key's own window: the key names its window length.
        rows = await conn.execute_query_dict(
            f"INSERT INTO {TABLE} (key, slot, hits, expires_at) VALUES {values} "
            f"ON CONFLICT (key, slot) DO UPDATE SET hits = {TABLE}.hits + 1 "
            f"RETURNING key, slot, hits, (SELECT p.hits FROM {TABLE} p WHERE p.key = {TABLE}.key "
            f"AND p.slot = {TABLE}.slot - 1) AS previous",
            args,
        )
        found = {(r["key"], int(r["slot"])): Count(int(r["hits"]), int(r["previous"] or 0)) for r in rows}
        return [found[(key, slot)] for key, _, slot in slots]

    async def sweep(self, now: float) -> None:
        conn = connections.get("default")
        await conn.execute_query(f"DELETE FROM {TABLE} WHERE expires_at < {placeholders(conn, 1)[0]}", [int(now)])

    async def aclose(self) -> None:
        return None


class RedisStore:
    """Counters in Redis: `rl:{key}:{slot}`, expiring after their two windows."""

    def __init__(self, url: str) -> None:
        from redis.asyncio import Redis  # imported only when REDIS_URL is set

        self.redis = Redis.from_url(
            url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S, health_check_interval=30
        )

    async def incr(self, slots: Sequence[Slot], now: float) -> list[Count]:
        async with self.redis.pipeline(transaction=True) as pipe:
            for key, window, slot in slots:
                name = f"rl:{key}:{slot}"
                pipe.incr(name)
                pipe.expire(name, 2 * window)
                pipe.get(f"rl:{key}:{slot - 1}")
            replies = await pipe.execute()
        return [Count(int(replies[3 * i]), int(replies[3 * i + 2] or 0)) for i in range(len(slots))]

    async def sweep(self, now: float) -> None:
        return None  # Redis expires the counters itself (EXPIRE)

    async def aclose(self) -> None:
        await self.redis.aclose()


def open_store(redis_url: str | None) -> Store:
    """Redis when `REDIS_URL` is set, else the database."""
    return RedisStore(redis_url) if redis_url else SqlStore()


def table_sql(postgres: bool) -> list[str]:
    """The counters' table (migration 0017)."""
    unlogged = "UNLOGGED " if postgres else ""
    suffix = "" if postgres else " WITHOUT ROWID"
    return [
        f"CREATE {unlogged}TABLE IF NOT EXISTS {TABLE} (key VARCHAR(96) NOT NULL, slot BIGINT NOT NULL, "
        f"hits INT NOT NULL, expires_at BIGINT NOT NULL, PRIMARY KEY (key, slot)){suffix}"
    ]


__all__ = ["Count", "RedisStore", "Slot", "SqlStore", "Store", "is_postgres", "open_store", "table_sql"]
