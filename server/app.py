"""`create_app(settings)`: the whole service built from explicit lists; Tortoise is opened in the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime

from starlette.applications import Starlette
from starlette.middleware import Middleware
from tortoise import Tortoise

from server.api.endpoints import build_routes
from server.api.problems import EXCEPTION_HANDLERS
from server.api.routes import ENDPOINTS
from server.clock import utc_now
from server.consent.check import CheckService
from server.consent.open import open_reader, postgres_target
from server.consent.reader import SqliteStateReader
from server.consent.stream_workers import PostgresSource, SqliteSource, StreamWorkers
from server.db import connection, tortoise_config, unapplied_migrations
from server.middleware.metrics import MetricsMiddleware, Registry
from server.middleware.request_log import RequestLogMiddleware
from server.migrate import MigrationError
from server.proof.log import TransparencyLog
from server.services import build_services
from server.settings import Settings


async def _checkpoint_loop(log: TransparencyLog, interval_s: int) -> None:
    """Sequence queued events and sign a checkpoint every `interval_s` (safe with several processes)."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await log.checkpoint()
        except Exception:  # a failed round is logged and retried at the next tick
            logging.getLogger("server.proof").exception("checkpoint round failed")


def create_app(settings: Settings, clock: Callable[[], datetime] = utc_now) -> Starlette:
    services = build_services(settings, clock)
    registry = Registry()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await Tortoise.init(config=tortoise_config(settings.database_url), _enable_global_fallback=True)
        missing = await unapplied_migrations(connection())
        if missing:  # the code would read and write a schema the database does not have yet
            await Tortoise.close_connections()
            raise MigrationError(
                f"the database has not applied {', '.join(missing)}: run `python -m server migrate` before serving"
            )
        reader = await open_reader(settings.database_url, settings.sqlite_bulk_mmap_mb)
        stream_workers = None
        if settings.stream_workers:
            source = (
                SqliteSource(reader.path, reader.bulk_mmap_mb)
                if isinstance(reader, SqliteStateReader)
                else PostgresSource(*postgres_target(settings.database_url))
            )
            stream_workers = StreamWorkers(source, settings.stream_workers)
            stream_workers.start()
        services.checks = CheckService(services.catalog, reader, clock, stream_workers)
        checkpoints = (
            asyncio.create_task(_checkpoint_loop(services.log, settings.checkpoint_interval_s))
            if settings.checkpoint_interval_s
            else None
        )
        deliveries = (
            asyncio.create_task(services.recipients.run(settings.recipient_poll_s))
            if settings.recipient_poll_s
            else None
        )
        try:
            await services.catalog.reload()
            yield
        finally:
            for task in (checkpoints, deliveries):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            services.checks = None
            if stream_workers is not None:
                await asyncio.to_thread(stream_workers.close)
            await reader.close()
            await Tortoise.close_connections()

    app = Starlette(
        routes=build_routes(ENDPOINTS),
        middleware=[Middleware(RequestLogMiddleware), Middleware(MetricsMiddleware, registry=registry)],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.metrics = registry
    return app
