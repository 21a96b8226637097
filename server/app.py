"""`create_app(settings)`: the whole service built from explicit lists; Tortoise is opened in the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from functools import partial

from starlette.applications import Starlette
from starlette.middleware import Middleware
from tortoise import Tortoise

from preference_center.pages import unavailable_page as preference_unavailable
from preference_center.routes import PREFERENCE_ENDPOINTS
from server.api.gauges import Gauges
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
from server.console.public import unavailable_page as public_request_unavailable
from server.console.routes import DESK_ENDPOINTS
from server.console.web import unavailable_page as desk_unavailable
from server.db import connection, sqlite_path, tortoise_config, unapplied_migrations
from server.dsr.context import controller_zone
from server.dsr.reminders import remind
from server.files import tighten_service_files
from server.kernel.endpoints import METRICS, SCOPE, STAFF, Endpoint, Guard, build_routes, scope_guard, token_guard
from server.kernel.idempotency import IdempotencyKeys
from server.kernel.openapi import build_openapi
from server.kernel.problems import EXCEPTION_HANDLERS, SendAgainPages
from server.leases import Elector, Job
from server.ledger.evidence import pseudonym
from server.middleware.body_timeout import BodyTimeoutMiddleware
from server.middleware.headers import SecurityHeadersMiddleware
from server.middleware.metrics import MetricsMiddleware, Registry
from server.middleware.proxy import ProxyHeadersMiddleware
from server.middleware.request_log import RequestLogMiddleware
from server.migrate import MigrationError
from server.proof.log import TransparencyLog
from server.services import Services
from server.settings import Settings


async def _checkpoint_loop(log: TransparencyLog, interval_s: int) -> None:
    """Sequence queued events and sign a checkpoint every `interval_s`."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await log.checkpoint()
        except Exception:  # a failed round is logged and retried at the next tick
            logging.getLogger("server.proof").exception("checkpoint round failed")


def background_jobs(settings: Settings, services: Services) -> dict[str, Job]:
    """The periodic work of the service, each job run by one server process at a time (server.leases)."""
    jobs: dict[str, Job] = {}
    if settings.checkpoint_interval_s:
        jobs["checkpoints"] = lambda: _checkpoint_loop(services.log, settings.checkpoint_interval_s)
    if settings.recipient_poll_s:
        jobs["recipient-deliveries"] = lambda: services.recipients.run(settings.recipient_poll_s)
    if settings.dsr_reminder_poll_s:
        jobs["dsr-reminders"] = lambda: remind(
            services.mailer,
            services.clock,
            controller_zone(services.controller),
            settings.dsr_reminder_days,
            settings.issuer,
            settings.dsr_reminder_poll_s,
        )
    return jobs


SHUTDOWN_STEP_S = 10.0


async def _shutdown_step(name: str, step: Awaitable[object]) -> None:
    """One step of the app's shutdown, cut after SHUTDOWN_STEP_S and logged: a step that waits for ever (a
    connection never given back, a task that does not end) must not keep the process from exiting, nor the
    steps after it from running."""
    try:
        async with asyncio.timeout(SHUTDOWN_STEP_S):
            await step
    except TimeoutError:
        logging.getLogger("server.app").error("shutdown: %s did not end within %s s; going on", name, SHUTDOWN_STEP_S)


async def _cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


# Every endpoint of the service, each feature's list in turn; nothing is routed that is not listed here. The API's
# come first: its consent checks are the requests sent most, and Starlette tries routes in order.
ENDPOINTS: list[Endpoint] = [*API_ENDPOINTS, *PREFERENCE_ENDPOINTS, *BANNER_ENDPOINTS, *DESK_ENDPOINTS]


# Each feature's own page for a 503 that reached the app's handler (server.kernel.problems), by path prefix.
SEND_AGAIN_PAGES: SendAgainPages = [
    (("/console", "/dsr"), desk_unavailable),
    (("/requests",), public_request_unavailable),
    (("/preferences", "/unsubscribe"), preference_unavailable),
]


def routed_endpoints(settings: Settings) -> list[Endpoint]:
    """The endpoints this app serves: the demo and development pages only outside production."""
    production = settings.environment == "production"
    return [ep for ep in ENDPOINTS if not (production and ep.development_only)]


def _idempotency_keys(settings: Settings, clock: Callable[[], datetime]) -> IdempotencyKeys:
    """Keyed writes' answers, each kept with the pseudonym of the subject it names so an erasure deletes it."""
    return IdempotencyKeys(
        timedelta(hours=settings.idempotency_key_hours), clock, partial(pseudonym, settings.secret_key)
    )


def create_app(settings: Settings, clock: Callable[[], datetime] = utc_now) -> Starlette:
    application = build(settings, clock)
    services = application.services
    registry = Registry()
    endpoints = routed_endpoints(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tighten_service_files(settings, sqlite_path(settings.database_url))  # GDPR 32: personal data, keys
        config = tortoise_config(settings.database_url, acquire_timeout_s=settings.database_acquire_timeout_s)
        await Tortoise.init(config=config, _enable_global_fallback=True)
        missing = await unapplied_migrations(connection())
        if missing:  # the code would read and write a schema the database does not have yet
            await Tortoise.close_connections()
            raise MigrationError(
                f"the database has not applied {', '.join(missing)}: run `python -m server migrate` before serving"
            )
        # A new log's id is fixed now, whatever PUBLIC_URL becomes later; links are signed for it, so they outlast
        # a PUBLIC_URL change too.
        services.links.adopt(await services.log.identity())
        reader = await open_reader(
            settings.database_url, settings.sqlite_bulk_mmap_mb, acquire_timeout_s=settings.database_acquire_timeout_s
        )
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
        elector = Elector(background_jobs(settings, services), settings.lease_s)
        # The view of revoked clients is loaded before the first request and kept fresh (server.auth.revocation).
        clients = asyncio.create_task(services.tokens.clients.run(settings.client_refresh_s))
        # Expired rate-limit counters, in the lifespan's context: a task started by a request would inherit its
        # transaction's connection.
        sweeps = asyncio.create_task(services.limiter.run_sweeps())
        try:
            await services.tokens.clients.refresh()
            await services.catalog.reload()
            await elector.start()
            yield
        finally:
            await _shutdown_step("the background jobs", elector.stop())
            for name, task in (("the clients' view", clients), ("the rate-limit sweeps", sweeps)):
                await _shutdown_step(name, _cancelled(task))
            services.checks = None
            if stream_workers is not None:
                await _shutdown_step("the stream workers", asyncio.to_thread(stream_workers.close))
            await _shutdown_step("the check reader", reader.close())
            await _shutdown_step("the rate-limit store", services.limiter.aclose())
            await _shutdown_step("the database connections", Tortoise.close_connections())

    guards: dict[str, Guard] = {
        SCOPE: scope_guard(services.tokens.verify),
        STAFF: staff_guard,
        METRICS: token_guard(settings.metrics_token, open_when_unset=settings.environment != "production"),
    }
    app = Starlette(
        routes=build_routes(endpoints, guards, _idempotency_keys(settings, clock)),
        # Outermost first: the proxy's client and scheme are in the scope before anything reads them.
        middleware=[
            Middleware(ProxyHeadersMiddleware, trusted=settings.forwarded_allow_ips),
            Middleware(SecurityHeadersMiddleware, hsts_max_age_s=settings.hsts_max_age_s),
            Middleware(RequestLogMiddleware),
            Middleware(MetricsMiddleware, registry=registry),
            Middleware(BodyTimeoutMiddleware, timeout_s=settings.http_body_timeout_s),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.preferences = application.preferences
    app.state.banner = application.banner
    app.state.desk = application.desk
    app.state.metrics = registry
    zone = controller_zone(services.controller)
    app.state.gauges = Gauges(clock, lambda: clock().astimezone(zone).date())
    app.state.max_body_bytes = settings.max_body_bytes
    app.state.send_again_pages = SEND_AGAIN_PAGES
    app.state.openapi = build_openapi(endpoints, settings.issuer, webhooks=WEBHOOKS, components=COMPONENTS)
    return app
