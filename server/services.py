"""The objects one app process shares between requests, built once from settings in the lifespan."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from server.auth.keys import KeyStore
from server.auth.tokens import TokenService
from server.consent.check import CheckService
from server.ledger.append import Ledger
from server.policies.catalog import Catalog
from server.settings import Settings


@dataclass
class Services:
    settings: Settings
    clock: Callable[[], datetime]
    catalog: Catalog
    ledger: Ledger
    keys: KeyStore
    tokens: TokenService
    checks: CheckService | None = None  # opened in the lifespan, with the database


def build_services(settings: Settings, clock: Callable[[], datetime]) -> Services:
    catalog = Catalog(settings.catalog_ttl_s)
    keys = KeyStore(settings.signing_keys_dir).load()
    return Services(
        settings=settings,
        clock=clock,
        catalog=catalog,
        ledger=Ledger(settings.secret_key, catalog, clock),
        keys=keys,
        tokens=TokenService(
            keys,
            issuer=settings.issuer,
            audience=settings.api_audience,
            lifetime_s=settings.token_lifetime_s,
            cache_size=settings.token_cache_size,
        ),
    )
