"""The objects one app process shares between requests, built once from settings in the lifespan."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from preference_center import setup as preference_center_setup
from server.auth.keys import KeyStore
from server.auth.tokens import TokenService
from server.banner import setup as banner_setup
from server.consent.check import CheckService
from server.desk import setup as desk_setup
from server.ledger.append import Ledger
from server.policies.catalog import Catalog
from server.proof.controller import load_controller
from server.proof.log import TransparencyLog
from server.proof.receipts import ReceiptIssuer
from server.recipients.dispatcher import Dispatcher
from server.settings import Settings


@dataclass
class Services:
    settings: Settings
    clock: Callable[[], datetime]
    catalog: Catalog
    ledger: Ledger
    keys: KeyStore
    log: TransparencyLog
    tokens: TokenService
    recipients: Dispatcher
    checks: CheckService | None = None  # opened in the lifespan, with the database
    # Feature objects, attached by each feature's own `attach(services)` (see build_services).
    preferences: Any = None
    banner: Any = None
    desk: Any = None


def build_services(settings: Settings, clock: Callable[[], datetime]) -> Services:
    catalog = Catalog(settings.catalog_ttl_s)
    keys = KeyStore(settings.signing_keys_dir).load()
    receipts = ReceiptIssuer(keys, load_controller(settings.policy_dir), settings.issuer)
    recipients = Dispatcher(
        keys,
        settings.issuer,
        clock,
        timeout_s=settings.recipient_timeout_s,
        retry_for=timedelta(hours=settings.recipient_retry_hours),
    )
    ledger = Ledger(settings.secret_key, catalog, clock, receipts)
    ledger.on_notices = recipients.wake
    services = Services(
        settings=settings,
        clock=clock,
        catalog=catalog,
        ledger=ledger,
        keys=keys,
        log=TransparencyLog(keys, settings.issuer, clock),
        tokens=TokenService(
            keys,
            issuer=settings.issuer,
            audience=settings.api_audience,
            lifetime_s=settings.token_lifetime_s,
            cache_size=settings.token_cache_size,
        ),
        recipients=recipients,
    )
    preference_center_setup.attach(services)
    banner_setup.attach(services)
    desk_setup.attach(services)
    return services
