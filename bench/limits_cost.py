"""What the shared rate limit adds to a banner record: `Limiter.hit` with the record's two keys (its consent id and
its network), one call after another, on each store.

    python -m bench.limits_cost [--database-url URL] [--redis-url URL] [--calls N]

Without `--database-url` a fresh SQLite file (WAL, synchronous=FULL: the service's settings) is used. The table is
created if missing (migration 0017's statement). Prints the median and 99th percentile per call, in microseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from tortoise import Tortoise, connections

from server.db import is_postgres, tortoise_config
from server.limits import Limiter, RedisStore, Rule, SqlStore, Store
from server.limits.stores import table_sql

CONSENT = Rule("banner-consent", 10, 60)
NETWORK = Rule("banner-network", 600, 60)


async def _measure(store: Store, calls: int) -> tuple[float, float]:
    limiter = Limiter(store, "bench-secret-" * 4)
    times = []
    for i in range(calls):
        started = time.perf_counter()
        await limiter.hit((CONSENT, f"ck_{i:022d}"), (NETWORK, f"198.51.{i % 200}.0"))
        times.append(time.perf_counter() - started)
    await limiter.aclose()
    times.sort()
    return statistics.median(times) * 1e6, times[int(len(times) * 0.99)] * 1e6


async def _sql(url: str, calls: int) -> tuple[str, float, float]:
    await Tortoise.init(config=tortoise_config(url), _enable_global_fallback=True)
    try:
        conn = connections.get("default")
        for statement in table_sql(is_postgres(conn)):
            await conn.execute_script(statement)
        name = "PostgreSQL (UNLOGGED table)" if is_postgres(conn) else "SQLite (WAL, synchronous=FULL)"
        return (name, *await _measure(SqlStore(), calls))
    finally:
        await Tortoise.close_connections()


async def main(args: argparse.Namespace) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite://{Path(tmp) / 'limits.sqlite3'}"
        rows.append(await _sql(url, args.calls))
    if args.redis_url:
        rows.append(("Redis", *await _measure(RedisStore(args.redis_url), args.calls)))
    print(f"Limiter.hit, two keys, {args.calls} calls in a row")
    for name, median, p99 in rows:
        print(f"  {name:34} median {median:7.0f} us   p99 {p99:7.0f} us")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url")
    parser.add_argument("--redis-url")
    parser.add_argument("--calls", type=int, default=2000)
    asyncio.run(main(parser.parse_args()))
