"""`Desk`: what the console's handlers share, built once by the composition root: the domain services, the staff
sessions and identity provider client, the approved answers, the templates and static files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from server import markdown
from server.console.answers import AnswerBook
from server.dsr import requests as dsr
from server.dsr.context import Context
from server.dsr.deadlines import received_on
from server.dsr.service import Requests
from server.services import Services
from server.settings import Settings
from server.staff import accounts
from server.staff.oidc import OidcClient
from server.staff.sessions import SessionCodec
from server.staff.throttle import Limits

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
STATIC_DIR = Path(__file__).resolve().parent / "static"


class Desk:
    def __init__(self, settings: Settings, services: Services) -> None:
        self.settings = settings
        self.services = services
        self.requests: Requests = services.requests
        context: Context = services.requests.context
        self.context = context
        self.controller = context.controller
        self.zone = context.zone
        self.now = context.now
        self.today = context.today
        self.url = context.url
        self.mailer = context.mailer
        self.export_links = context.export_links
        answers_dir = settings.policy_dir / "answers"
        self.answers = AnswerBook(answers_dir) if answers_dir.is_dir() else AnswerBook.empty(answers_dir)
        self.signin_limits = Limits.of(settings)
        accounts.set_hash_threads(settings.password_hash_threads)
        self.sessions = SessionCodec(
            settings.secret_key, settings.session_lifetime_s, secure=settings.issuer.startswith("https://")
        )
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

    def render(self, template: str, **context: Any) -> str:
        return self.templates.get_template(template).render(**context)
