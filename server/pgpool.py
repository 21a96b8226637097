"""The ORM's PostgreSQL engine with a bounded wait for a connection.

Tortoise's asyncpg client takes a pool connection with `pool.acquire()` and no timeout, so a PostgreSQL that hangs
(a new connection's handshake never answered) or a pool exhausted by requests held on locks would make every further
request wait for ever. Here the pool gives each `acquire` a default timeout (`DATABASE_ACQUIRE_TIMEOUT_SECONDS`): past
it asyncpg raises `TimeoutError`, which the app answers 503 `/problems/service-unavailable` with Retry-After
(`server.db.send_again_error`). A new connection's handshake is bounded by the same time (asyncpg's connect
`timeout`, 60 s by default). Tortoise loads this module as the engine named in `server.db.credentials`.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from asyncpg.pool import PoolAcquireContext
from tortoise.backends.asyncpg.client import AsyncpgDBClient

DEFAULT_ACQUIRE_TIMEOUT_S = 5.0


class BoundedPool:
    """An opened asyncpg pool whose `acquire` (and so the `release` after it) waits at most `acquire_timeout` by
    default; everything else is the pool's own. A wrapper rather than a subclass: `asyncpg.create_pool` builds its
    `Pool` itself."""

    def __init__(self, pool: asyncpg.Pool, acquire_timeout: float) -> None:
        self._pool = pool
        self.acquire_timeout = acquire_timeout

    def acquire(self, *, timeout: float | None = None) -> PoolAcquireContext:
        return self._pool.acquire(timeout=self.acquire_timeout if timeout is None else timeout)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


async def bounded_pool(dsn: str | None, *, acquire_timeout: float, **kwargs: Any) -> BoundedPool:
    """`asyncpg.create_pool(dsn, **kwargs)`, opened, as a `BoundedPool`. Connecting (the first connections here, and
    each new one later) is bounded by the same time unless `timeout` says otherwise."""
    kwargs.setdefault("timeout", acquire_timeout)
    return BoundedPool(await asyncpg.create_pool(dsn, **kwargs), acquire_timeout)


class BoundedAsyncpgClient(AsyncpgDBClient):
    """Tortoise's asyncpg client on a `BoundedPool`; `acquire_timeout` (seconds) comes from the credentials."""

    def __init__(self, *args: Any, acquire_timeout: float = DEFAULT_ACQUIRE_TIMEOUT_S, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.acquire_timeout = float(acquire_timeout)

    async def create_pool(self, **kwargs: Any) -> Any:
        return await bounded_pool(None, acquire_timeout=self.acquire_timeout, **kwargs)


client_class = BoundedAsyncpgClient  # what Tortoise looks for in an engine module
