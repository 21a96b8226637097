"""The preference center's shared objects, built once per app by the composition root (`server.composition`)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

from markupsafe import Markup

from preference_center.texts import Texts
from server.limits import Limiter, Rule
from server.links.tokens import LinkTokens
from server.mail.mailer import Mailer
from server.models import PolicyVersion
from server.optin.service import OptIn
from server.settings import Settings

# "Send me a link" requests per network (each mail also counts against the person's limit, `OptIn`); fails closed
# like the mail limit: the visitor is asked to try again in a few minutes.
LINK_RULE = Rule("link-network", 5, 15 * 60, fail_open=False)
STATIC_DIR = Path(__file__).resolve().parent / "static"
EMBED_SCRIPT = files("widgets") / "embed.js"  # package data: found in a checkout and in an installed wheel alike
STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


class PreferenceCenter:
    """What the preference center's handlers share: settings, wording, link tokens, the double opt-in use case."""

    def __init__(
        self, settings: Settings, texts: Texts, links: LinkTokens, optin: OptIn, mailer: Mailer, limiter: Limiter
    ) -> None:
        self.settings = settings
        self.texts = texts
        self.links = links
        self.optin = optin
        self.mailer = mailer  # the dev outbox page lists what it wrote
        self.controller = texts.controller
        self.limiter = limiter
        self._texts: dict[int, str] = {}
        self.assets = _assets()

    @property
    def production(self) -> bool:
        return self.settings.environment == "production"

    def gettext(self, lang: str, message: str, **values: Any) -> str:
        return self.texts.gettext(lang, message, **values)

    def channel_phrase(self, lang: str, channel: str) -> str:
        return self.texts.channel_phrase(lang, channel)

    def render(self, lang: str, template: str, **context: Any) -> str:
        return self.texts.render(lang, template, **context)

    def fragment(self, lang: str, template: str, **context: Any) -> Markup:
        return self.texts.fragment(lang, template, **context)

    def url(self, path: str) -> str:
        return f"{self.settings.issuer}{path}"

    async def policy_text(self, policy_id: int) -> str:
        """The exact published Markdown of a version (immutable, so cached for the process's life)."""
        text = self._texts.get(policy_id)
        if text is None:
            row = await PolicyVersion.get(id=policy_id).only("id", "content")
            text = self._texts[policy_id] = row.content
        return text


def _assets() -> dict[str, tuple[bytes, str]]:
    """Static files (read once, at build time): name -> (bytes, media type)."""
    assets = {
        path.name: (path.read_bytes(), STATIC_TYPES[path.suffix])
        for path in STATIC_DIR.iterdir()
        if path.suffix in STATIC_TYPES
    }
    if EMBED_SCRIPT.is_file():
        assets["embed.js"] = (EMBED_SCRIPT.read_bytes(), STATIC_TYPES[".js"])
    return assets
