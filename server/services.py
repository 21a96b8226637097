"""`Services`: the domain services one app process shares between requests, typed, built by `server.composition`.

Features read them from the request (`services_of`); what a feature builds for itself (its templates, its
guards) is its own object, built beside these by the composition root."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from starlette.requests import Request

from server.auth.keys import KeyStore
from server.auth.tokens import TokenService
from server.consent.service import CheckService
from server.dsr.service import Requests
from server.ledger.append import Ledger
from server.limits import Limiter
from server.links.tokens import LinkTokens
from server.mail.mailer import Mailer
from server.optin.service import OptIn
from server.policies.catalog import Catalog
from server.policies.controller import Controller
from server.proof.bundle import BundleSources
from server.proof.log import TransparencyLog
from server.recipients.dispatcher import Dispatcher
from server.settings import Settings


@dataclass
class Services:
    settings: Settings
    clock: Callable[[], datetime]
    controller: Controller
    catalog: Catalog
    keys: KeyStore
    tokens: TokenService
    ledger: Ledger
    log: TransparencyLog
    bundles: BundleSources
    recipients: Dispatcher
    mailer: Mailer
    links: LinkTokens
    optin: OptIn
    requests: Requests
    limiter: Limiter  # the rate limits shared by every process (server.limits)
    checks: CheckService | None = None  # opened in the lifespan, with the database


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services
