"""The benchmark server: the real app plus, for the benchmark only, a raw-driver baseline route.

`GET /bench/baseline?id=<subject uuid>` does ONE primary-key lookup on `subjects` with the raw driver and returns
JSON: on SQLite through one `aiosqlite` connection, on PostgreSQL through an `asyncpg` pool (max_size 8, like the
product's check reader). It is the floor a consent check is compared with: same process, same uvicorn, same event
loop, same middleware stack (the route is added to the real app's router, so the product endpoints pay no extra
mount hop), no auth, no validation, no decision.

Never part of the product: only `python -m bench.serve` (started by `bench.check_bench`) builds it.
Settings come from the environment, as for `python -m server serve`.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import uuid
from collections.abc import AsyncIterator
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import aiosqlite
import asyncpg
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.app import create_app
from server.db import credentials
from server.logs import configure_logging
from server.runtime import tune_gc
from server.settings import Settings

_SQLITE_LOOKUP = "SELECT id, ref, last_seq, head_hash FROM subjects WHERE id = ?"
_PG_LOOKUP = "SELECT id::text, ref, last_seq, head_hash FROM subjects WHERE id = $1"
BASELINE_PATH = "/bench/baseline"


class Lookup(Protocol):
    async def open(self) -> None: ...

    async def fetch(self, subject_id: str) -> tuple[Any, ...] | None: ...

    async def close(self) -> None: ...


class SqliteLookup:
    """One aiosqlite connection (read-only), opened in the lifespan."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.conn: aiosqlite.Connection | None = None

    async def open(self) -> None:
        self.conn = await aiosqlite.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None)
        await self.conn.execute("PRAGMA query_only = 1")
        await self.conn.execute("PRAGMA busy_timeout = 5000")

    async def fetch(self, subject_id: str) -> tuple[Any, ...] | None:
        assert self.conn is not None
        async with self.conn.execute(_SQLITE_LOOKUP, (subject_id,)) as cursor:
            row = await cursor.fetchone()
        return tuple(row) if row is not None else None

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()


class PostgresLookup:
    """An asyncpg pool of at most 8 connections, like `PostgresStateReader.connect`."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        self.pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=8)

    async def fetch(self, subject_id: str) -> tuple[Any, ...] | None:
        assert self.pool is not None
        row = await self.pool.fetchrow(_PG_LOOKUP, subject_id)
        return tuple(row) if row is not None else None

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()


def lookup_for(database_url: str) -> Lookup:
    """The same connection target as `server.consent.open.open_reader`."""
    parts = urlsplit(database_url)
    if parts.scheme == "sqlite":
        return SqliteLookup(credentials(database_url)["credentials"]["file_path"])
    return PostgresLookup(urlunsplit(("postgresql", parts.netloc, parts.path, "", "")))


def build_app(settings: Settings) -> Starlette:
    """`create_app(settings)` with the baseline route, its connection opened inside the app's own lifespan."""
    app = create_app(settings)
    lookup = lookup_for(settings.database_url)
    product_lifespan = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(inner: Starlette) -> AsyncIterator[Any]:
        async with product_lifespan(inner) as state:
            await lookup.open()
            try:
                yield state
            finally:
                await lookup.close()

    async def baseline(request: Request) -> Response:
        """One primary-key lookup on `subjects`, as JSON."""
        raw = request.query_params.get("id", "")
        try:
            subject_id = str(uuid.UUID(raw))
        except ValueError:
            return Response(b'{"error":"id must be a UUID"}', status_code=400, media_type="application/json")
        row = await lookup.fetch(subject_id)
        if row is None:
            return Response(b'{"error":"no such subject"}', status_code=404, media_type="application/json")
        sid, ref, last_seq, head = row
        body = {"id": sid, "ref": ref, "last_seq": last_seq, "head_hash": head}
        return Response(orjson.dumps(body), media_type="application/json")

    app.router.lifespan_context = lifespan
    app.router.routes.insert(0, Route(BASELINE_PATH, baseline, methods=["GET"]))
    return app


def event_loop_and_parser() -> tuple[str, str]:
    """uvloop and httptools when installed (the same for both endpoints, they share the server)."""
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return loop, http


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    configure_logging(settings.log_level)
    loop, http = event_loop_and_parser()
    app = build_app(settings)
    tune_gc()  # as `python -m server serve` does
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        workers=1,
        loop=loop,
        http=http,
        log_level="warning",
        access_log=False,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
