"""`services.desk`: the service desk's shared objects, built once per app from the settings (see `setup.attach`)."""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from server.db import busy_as_domain_error
from server.desk import dsr, markdown
from server.desk.answers import AnswerBook
from server.desk.deadlines import received_on
from server.desk.dsr import SUBJECT, Actor
from server.desk.export import ExportLinks
from server.desk.oidc import OidcClient
from server.desk.sessions import SessionCodec
from server.errors import SEND_AGAIN, NotFound
from server.models import DataSubjectRequest
from server.policies.snapshot import CatalogSnapshot, PolicyInfo
from server.proof.controller import load_controller

if TYPE_CHECKING:
    from server.services import Services

log = logging.getLogger("server.desk")
TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
STATIC_DIR = Path(__file__).resolve().parent / "static"
# The day a request is received is counted where the controller is (GDPR 12(3) and Regulation 1182/71).
ZONES = {"FR": "Europe/Paris", "BE": "Europe/Brussels", "LU": "Europe/Luxembourg", "DE": "Europe/Berlin"}


class Desk:
    def __init__(self, services: Services) -> None:
        settings = services.settings
        self.services = services
        self.settings = settings
        self.controller = load_controller(settings.policy_dir)
        self.zone = ZoneInfo(ZONES.get(self.controller.jurisdiction, "UTC"))
        answers_dir = settings.policy_dir / "answers"
        self.answers = AnswerBook(answers_dir) if answers_dir.is_dir() else AnswerBook.empty(answers_dir)
        self.sessions = SessionCodec(
            settings.secret_key, settings.session_lifetime_s, secure=settings.issuer.startswith("https://")
        )
        self.export_links = ExportLinks(settings.secret_key, settings.link_token_lifetime_s)
        self.oidc: OidcClient | None = None
        if settings.oidc_issuer and settings.oidc_client_id:
            self.oidc = OidcClient(
                settings.oidc_issuer,
                settings.oidc_client_id,
                settings.oidc_client_secret,
                settings.oidc_role_claim,
                redirect_uri=self.url("/console/auth/callback"),
            )
        self.templates = Environment(
            loader=FileSystemLoader(TEMPLATES_DIR),
            autoescape=select_autoescape(["html"]),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.globals.update(controller=self.controller, kind_titles=dsr.KIND_TITLES)
        self.templates.filters.update(
            md=markdown.md,
            md_block=markdown.md_block,
            quoted=markdown.quoted,
            # The day of an instant where the controller is, as deadlines count it (GDPR 12(3))
            local_day=lambda instant: received_on(instant, self.zone).isoformat(),
        )
        self.assets = (
            {p.name: p.read_bytes() for p in STATIC_DIR.iterdir() if p.suffix in (".css", ".js")}
            if STATIC_DIR.is_dir()
            else {}
        )

    def now(self) -> datetime:
        return self.services.clock()

    def today(self) -> date:
        return self.now().astimezone(self.zone).date()

    def url(self, path: str) -> str:
        return f"{self.settings.issuer}{path}"

    @property
    def mailer(self) -> Any:
        """The preference center's mailer (SMTP or the dev outbox), when the preference center is built."""
        return getattr(self.services.preferences, "mailer", None)

    def render(self, template: str, **context: Any) -> str:
        return self.templates.get_template(template).render(**context)

    def current_policy(self, catalog: CatalogSnapshot, lang: str, document: str = "privacy-policy") -> PolicyInfo:
        """The version of `document` in force now in `lang` (the newest already effective, else the oldest)."""
        now = self.now()
        versions = sorted(
            (p for p in catalog.policies.values() if p.document == document and p.lang == lang),
            key=lambda p: p.effective_at,
        )
        if not versions and lang != "fr":
            return self.current_policy(catalog, "fr", document)
        if not versions:
            raise NotFound(f"no published version of {document}", parameter="policy")
        effective = [p for p in versions if p.effective_at <= now]
        return effective[-1] if effective else versions[0]

    async def open_request(
        self,
        subject_ref: str,
        kind: str,
        channel: str = "preference_center",
        details: str = "",
        *,
        actor: Actor = SUBJECT,
        received: date | None = None,
        owner_id: int | None = None,
    ) -> DataSubjectRequest:
        """Open a data-subject request for `subject_ref` (from the preference center by default).

        An objection to direct marketing opened by the person takes effect at once (GDPR 21(3)); every other kind
        goes to the queue, due one month after receipt (GDPR 12(3)).
        """
        request, _ = await self.open_or_repeat(
            subject_ref, kind, channel, details, actor=actor, received=received, owner_id=owner_id
        )
        return request

    async def open_or_repeat(
        self,
        subject_ref: str,
        kind: str,
        channel: str = "preference_center",
        details: str = "",
        *,
        actor: Actor = SUBJECT,
        received: date | None = None,
        owner_id: int | None = None,
        repeat_within: timedelta | None = None,
    ) -> tuple[DataSubjectRequest, bool]:
        """`open_request`, and whether the request is new (see `dsr.open_or_repeat`): a repeated request is
        answered with the earlier one, whose effects already ran."""
        subject = await dsr.subject_for(subject_ref, self.settings.secret_key)
        request, new = await dsr.open_or_repeat(
            subject,
            kind,
            channel=channel,
            details=details,
            actor=actor,
            now=self.now(),
            zone=self.zone,
            received=received,
            owner_id=owner_id,
            repeat_within=repeat_within,
        )
        if not new:
            return request, False
        if kind == "objection" and actor.type == "subject" and subject.erased_at is None:
            from server.desk.effects import object_to_marketing

            try:
                with busy_as_domain_error():
                    await object_to_marketing(self, request, actor, touchpoint="preference_center")
            except SEND_AGAIN as exc:
                # The request is stored: answering "send it again" would open a second one. It stays open in the
                # queue, where an agent records the objection (the person is told it was received).
                log.warning("objection of request %s left to the desk: %s", request.id, exc.slug)
        return request, True
