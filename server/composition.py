"""The composition root: every service of one process, built from settings with explicit, typed dependencies.

`build_services` makes the domain services (also what the CLI verbs use); `build` adds each feature's own object.
Nothing else constructs a service, and no feature reaches into another's."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from preference_center.center import PreferenceCenter
from preference_center.texts import Texts
from server.auth.keys import signing_keys
from server.auth.revocation import STALE_AFTER_S, ClientView
from server.auth.tokens import TokenService
from server.banner.service import BannerLimits, BannerService
from server.banner.sites import DEMO_SITE, with_origin
from server.console.desk import Desk
from server.dsr.context import Context
from server.dsr.export import ExportLinks
from server.dsr.service import Requests
from server.kernel.idempotency import after_commit
from server.ledger.append import Ledger
from server.limits import Limiter, open_store
from server.links.tokens import LinkTokens
from server.mail.mailer import Mailer
from server.optin.service import MailTexts, OptIn
from server.policies.catalog import Catalog
from server.policies.controller import Controller, load_controller
from server.proof.bundle import BundleSources
from server.proof.log import TransparencyLog
from server.proof.receipts import ReceiptIssuer
from server.recipients.dispatcher import dispatcher_for
from server.services import Services
from server.settings import Settings


@dataclass(frozen=True)
class Application:
    """Everything one app process shares between requests."""

    services: Services
    preferences: PreferenceCenter
    banner: BannerService
    desk: Desk


def build_services(
    settings: Settings,
    clock: Callable[[], datetime],
    controller: Controller | None = None,
    texts: MailTexts | None = None,
) -> Services:
    """The domain services. `controller`: read from `purposes.yaml` unless given; `texts`: the wording of the mails
    to a person (the preference center's, by default)."""
    controller = controller if controller is not None else load_controller(settings.policy_dir)
    catalog = Catalog(settings.catalog_ttl_s)
    keys = signing_keys(settings)
    recipients = dispatcher_for(settings, keys, clock)
    ledger = Ledger(
        settings.secret_key,
        catalog,
        clock,
        ReceiptIssuer(keys, controller, settings.issuer),
        # Woken after the commit, also when an Idempotency-Key write holds the transaction around the ledger's.
        on_notices=lambda: after_commit(recipients.wake),
    )
    log = TransparencyLog(keys, settings.issuer, clock)
    mailer = Mailer(settings)
    links = LinkTokens(keys, settings.issuer, settings.link_token_lifetime_s)
    limiter = Limiter(open_store(settings.redis_url), settings.secret_key, now=lambda: clock().timestamp())
    optin = OptIn(
        ledger=ledger,
        catalog=catalog,
        links=links,
        mailer=mailer,
        texts=texts if texts is not None else Texts(controller),
        secret_key=settings.secret_key,
        public_url=settings.issuer,
        link_lifetime_s=settings.link_token_lifetime_s,
        limiter=limiter,
    )
    requests = Requests(
        Context(
            secret_key=settings.secret_key,
            public_url=settings.issuer,
            clock=clock,
            controller=controller,
            catalog=catalog,
            ledger=ledger,
            recipients=recipients,
            mailer=mailer,
            export_links=ExportLinks(settings.secret_key, settings.link_token_lifetime_s),
        )
    )
    return Services(
        settings=settings,
        clock=clock,
        controller=controller,
        catalog=catalog,
        keys=keys,
        tokens=TokenService(
            keys,
            issuer=settings.issuer,
            audience=settings.api_audience,
            lifetime_s=settings.token_lifetime_s,
            cache_size=settings.token_cache_size,
            clients=ClientView(stale_after_s=max(STALE_AFTER_S, 10 * settings.client_refresh_s)),
        ),
        ledger=ledger,
        log=log,
        bundles=BundleSources(clock, log, catalog, keys, settings.issuer, controller),
        recipients=recipients,
        mailer=mailer,
        links=links,
        optin=optin,
        requests=requests,
        limiter=limiter,
    )


def build(settings: Settings, clock: Callable[[], datetime]) -> Application:
    """The domain services and every feature's own object."""
    controller = load_controller(settings.policy_dir)
    texts = Texts(controller)
    services = build_services(settings, clock, controller, texts)
    return Application(
        services=services,
        preferences=PreferenceCenter(
            settings, texts, services.links, services.optin, services.mailer, services.limiter
        ),
        banner=_banner(settings, services),
        desk=Desk(settings, services),
    )


def _banner(settings: Settings, services: Services) -> BannerService:
    """Read `policy_docs/sites.yaml` and the banner texts, build `banner.js`; errors name the file at fault.

    Outside production, the `demo` site also allows the server's own origin (PUBLIC_URL): its demo page at
    /demo/banner is served from there, on whatever port the server runs (sites.yaml can only list the default's)."""
    banner = BannerService.load(
        settings.policy_dir,
        BannerLimits.of(services.limiter, settings.banner_rate_per_consent, settings.banner_network_limit),
        services.catalog,
        settings.issuer,
        services.clock,
    )
    if settings.environment != "production":
        banner.tree = with_origin(banner.tree, DEMO_SITE, settings.issuer)
    return banner
