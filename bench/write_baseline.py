"""The write benchmark's floor: one events-sized row inserted and committed per write with the raw driver.

    python -m bench.write_baseline --url DATABASE_URL --connections 16 --duration 5

A process of its own (as the server is), `--connections` writers at once for `--duration` seconds, each write one
transaction of one INSERT into `bench_baseline_events` (the columns of `consent_events`, its unique hash and a
`(subject_id, seq)` unique index, no triggers) and its commit:

- PostgreSQL: an asyncpg pool of `--connections`, one task per connection, each `INSERT` its own implicit
  transaction (asyncpg sends it as one extended-protocol round trip, then the commit is the backend's WAL flush);
- SQLite: one thread per connection, each with its own `sqlite3` connection in WAL with `synchronous=FULL` and a
  busy timeout (the product's settings, `server.db`), `BEGIN IMMEDIATE`, `INSERT`, `COMMIT`.

Prints one JSON line: writes, seconds, writes/s, CPU seconds of this process. Never part of the product.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sqlite3
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

_COLUMNS = (
    "id, subject_id, seq, purpose_id, channel_id, action, status, policy_version_id, touchpoint, method, "
    "actor_type, actor_id, ui_snapshot_sha256, evidence, recorded_at, valid_until, prev_hash, hash"
)
_PG_TABLE = """
CREATE TABLE IF NOT EXISTS bench_baseline_events (
    id uuid PRIMARY KEY, subject_id uuid NOT NULL, seq int NOT NULL, purpose_id varchar(64) NOT NULL,
    channel_id varchar(16) NOT NULL, action varchar(16) NOT NULL, status varchar(32) NOT NULL,
    policy_version_id int NOT NULL, touchpoint varchar(32) NOT NULL, method varchar(32) NOT NULL,
    actor_type varchar(16) NOT NULL, actor_id varchar(128), ui_snapshot_sha256 varchar(64), evidence jsonb NOT NULL,
    recorded_at timestamptz NOT NULL, valid_until timestamptz, prev_hash varchar(64) NOT NULL,
    hash varchar(64) NOT NULL UNIQUE, UNIQUE (subject_id, seq))
"""
_SQLITE_TABLE = """
CREATE TABLE IF NOT EXISTS bench_baseline_events (
    id CHAR(36) PRIMARY KEY, subject_id CHAR(36) NOT NULL, seq INT NOT NULL, purpose_id VARCHAR(64) NOT NULL,
    channel_id VARCHAR(16) NOT NULL, action VARCHAR(16) NOT NULL, status VARCHAR(32) NOT NULL,
    policy_version_id INT NOT NULL, touchpoint VARCHAR(32) NOT NULL, method VARCHAR(32) NOT NULL,
    actor_type VARCHAR(16) NOT NULL, actor_id VARCHAR(128), ui_snapshot_sha256 VARCHAR(64), evidence JSON NOT NULL,
    recorded_at TIMESTAMP NOT NULL, valid_until TIMESTAMP, prev_hash VARCHAR(64) NOT NULL,
    hash VARCHAR(64) NOT NULL UNIQUE, UNIQUE (subject_id, seq))
"""
_EVIDENCE = json.dumps({"ip": "203.0.113.0/24", "user_agent": "bench/1.0 (write baseline)"})


def _row(now: datetime) -> tuple[Any, ...]:
    """One event-sized row: ids, codes, evidence, instants and two SHA-256 texts."""
    return (
        uuid.uuid4(),
        uuid.uuid4(),
        1,
        "offers",
        "email",
        "grant",
        "granted",
        1,
        "api",
        "api",
        "client",
        "bench-client-0123456789",
        None,
        _EVIDENCE,
        now,
        None,
        "0" * 64,
        secrets.token_hex(32),
    )


async def _postgres(url: str, connections: int, duration: float) -> int:
    parts = urlsplit(url)
    dsn = urlunsplit(("postgresql", parts.netloc, parts.path, "", ""))
    pool = await asyncpg.create_pool(dsn, min_size=connections, max_size=connections)
    insert = f"INSERT INTO bench_baseline_events ({_COLUMNS}) VALUES ({', '.join(f'${i}' for i in range(1, 19))})"
    try:
        await pool.execute(_PG_TABLE)
        deadline = time.monotonic() + duration
        counts = [0] * connections

        async def writer(index: int) -> None:
            async with pool.acquire() as conn:
                while time.monotonic() < deadline:
                    row = list(_row(datetime.now(UTC)))
                    row[13] = _EVIDENCE  # jsonb as text
                    await conn.execute(insert, *row)
                    counts[index] += 1

        await asyncio.gather(*(writer(i) for i in range(connections)))
        return sum(counts)
    finally:
        await pool.close()


def _sqlite(path: str, connections: int, duration: float) -> int:
    insert = f"INSERT INTO bench_baseline_events ({_COLUMNS}) VALUES ({', '.join('?' * 18)})"
    setup = sqlite3.connect(path, isolation_level=None)
    setup.execute("PRAGMA journal_mode=WAL")
    setup.execute(_SQLITE_TABLE)
    setup.close()
    deadline = time.monotonic() + duration
    counts = [0] * connections

    def writer(index: int) -> None:
        conn = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=30000")
        try:
            while time.monotonic() < deadline:
                row = _row(datetime.now(UTC))
                values = (str(row[0]), str(row[1]), *row[2:14], row[14].isoformat(), *row[15:])
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(insert, values)
                conn.execute("COMMIT")
                counts[index] += 1
        finally:
            conn.close()

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.write_baseline", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="sqlite:///path or postgres://...")
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args(argv)
    cpu_before = os.times()
    started = time.monotonic()
    if args.url.startswith("sqlite://"):
        writes = _sqlite(args.url.removeprefix("sqlite://"), args.connections, args.duration)
    else:
        writes = asyncio.run(_postgres(args.url, args.connections, args.duration))
    seconds = time.monotonic() - started
    cpu_after = os.times()
    cpu = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
    print(json.dumps({"writes": writes, "seconds": seconds, "writes_per_s": writes / seconds, "cpu_s": cpu}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
