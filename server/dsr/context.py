"""What carrying out a data-subject request needs, built once by the composition root: the ledger, the catalogue,
the mailer, the recipients' dispatcher, the controller and the time zone its deadlines count in."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from zoneinfo import ZoneInfo

from server.dsr.export import ExportLinks
from server.ledger.append import Ledger
from server.mail.mailer import Mailer
from server.policies.catalog import Catalog
from server.policies.controller import Controller
from server.recipients.dispatcher import Dispatcher

# The day a request is received is counted where the controller is (GDPR 12(3) and Regulation 1182/71).
ZONES = {"FR": "Europe/Paris", "BE": "Europe/Brussels", "LU": "Europe/Luxembourg", "DE": "Europe/Berlin"}


def controller_zone(controller: Controller) -> ZoneInfo:
    return ZoneInfo(ZONES.get(controller.jurisdiction, "UTC"))


class Context:
    def __init__(
        self,
        *,
        secret_key: str,
        public_url: str,
        clock: Callable[[], datetime],
        controller: Controller,
        catalog: Catalog,
        ledger: Ledger,
        recipients: Dispatcher,
        mailer: Mailer,
        export_links: ExportLinks,
    ) -> None:
        self.secret_key = secret_key
        self.public_url = public_url
        self.clock = clock
        self.controller = controller
        self.zone = controller_zone(controller)
        self.catalog = catalog
        self.ledger = ledger
        self.recipients = recipients
        self.mailer = mailer
        self.export_links = export_links

    def now(self) -> datetime:
        return self.clock()

    def today(self) -> date:
        return self.now().astimezone(self.zone).date()

    def url(self, path: str) -> str:
        return f"{self.public_url}{path}"
