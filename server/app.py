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

from preference_center.routes import PREFERENCE_ENDPOINTS
from server.api.routes import API_ENDPOINTS
from server.api.webhooks import COMPONENTS, WEBHOOKS
from server.banner.routes import BANNER_ENDPOINTS
from server.clock import utc_now
from server.composition import build
from server.consent.open import open_reader, postgres_target
from server.consent.reader import SqliteStateReader
from server.consent.service import CheckService
from server.consent.stream_workers import PostgresSource, SqliteSource, StreamWorkers
from server.console.guard import staff_guard
from server.console.routes import DESK_ENDPOINTS
from server.db import connection, sqlite_path, tortoise_config, unapplied_migrations
from server.files import tighten_service_files
from server.kernel.endpoints import SCOPE, STAFF, Endpoint, Guard, build_routes, scope_guard
from server.kernel.openapi import build_openapi
from server.kernel.problems import EXCEPTION_HANDLERS
from server.middleware.metrics import MetricsMiddleware, Registry
from server.middleware.request_log import RequestLogMiddleware
from server.migrate import MigrationError
from server.proof.log import TransparencyLog
from server.settings import Settings


async def _checkpoint_loop(log: TransparencyLog, interval_s: int) -> None:
    """Sequence queued events and sign a checkpoint every `interval_s` (safe with several processes)."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await log.checkpoint()
        except Exception:  # a failed round is logged and retried at the next tick
            logging.getLogger("server.proof").exception("checkpoint round failed")


# Every endpoint of the service, each feature's list in turn; nothing is routed that is not listed here. The API's
# come first: its consent checks are the requests sent most, and Starlette tries routes in order.
ENDPOINTS: list[Endpoint] = [*API_ENDPOINTS, *PREFERENCE_ENDPOINTS, *BANNER_ENDPOINTS, *DESK_ENDPOINTS]


def routed_endpoints(settings: Settings) -> list[Endpoint]:
    """The endpoints this app serves: the demo and development pages only outside production."""
    production = settings.environment == "production"
    return [ep for ep in ENDPOINTS if not (production and ep.development_only)]


def create_app(settings: Settings, clock: Callable[[], datetime] = utc_now) -> Starlette:
    application = build(settings, clock)
    services = application.services
    registry = Registry()
    endpoints = routed_endpoints(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tighten_service_files(settings, sqlite_path(settings.database_url))  # GDPR 32: personal data, keys
        await Tortoise.init(config=tortoise_config(settings.database_url), _enable_global_fallback=True)
        missing = await unapplied_migrations(connection())
        if missing:  # the code would read and write a schema the database does not have yet
            await Tortoise.close_connections()
            raise MigrationError(
                f"the database has not applied {', '.join(missing)}: run `python -m server migrate` before serving"
            )
        await services.log.identity()  # a new log's id is fixed now, whatever PUBLIC_URL becomes later
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

    guards: dict[str, Guard] = {SCOPE: scope_guard(services.tokens.verify), STAFF: staff_guard}
    app = Starlette(
        routes=build_routes(endpoints, guards),
        middleware=[Middleware(RequestLogMiddleware), Middleware(MetricsMiddleware, registry=registry)],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.preferences = application.preferences
    app.state.banner = application.banner
    app.state.desk = application.desk
    app.state.metrics = registry
    app.state.max_body_bytes = settings.max_body_bytes
    app.state.openapi = build_openapi(endpoints, settings.issuer, webhooks=WEBHOOKS, components=COMPONENTS)
    return app
