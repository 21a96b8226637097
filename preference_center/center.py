"""The preference center's shared objects, built once per app from settings (see `setup.attach`)."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

from babel.dates import format_date
from babel.support import Translations
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from preference_center.i18n import LANGUAGE_NAMES, LANGUAGES, load_translations
from preference_center.mailer import Mailer
from preference_center.tokens import LinkTokens
from server.auth.keys import KeyStore
from server.models import PolicyVersion
from server.policies.documents import PolicySourceError, load_tree
from server.settings import Settings

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
STATIC_DIR = Path(__file__).resolve().parent / "static"
EMBED_SCRIPT = files("widgets") / "embed.js"  # package data: found in a checkout and in an installed wheel alike
STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


def N_(message: str) -> str:
    return message


CHANNEL_LABELS = {
    "email": N_("Email"),
    "sms": N_("Text message"),
    "phone": N_("Phone"),
    "post": N_("Post"),
    "push": N_("Push notifications"),
    "web": N_("On our website"),
}
# A channel inside a sentence ("... Newsletter by email ..."), translated as a whole phrase.
CHANNEL_PHRASES = {
    "email": N_("by email"),
    "sms": N_("by text message"),
    "phone": N_("by phone"),
    "post": N_("by post"),
    "push": N_("by push notification"),
    "web": N_("on our website"),
}
BASIS_LABELS = {
    "consent": N_("Legal basis: your consent."),
    "soft_opt_in": N_("Legal basis: your consent, or the soft opt-in after a purchase."),
    "legitimate_interest": N_("Legal basis: our legitimate interest. You can object at any time."),
    "necessary": N_("Necessary for the site to work."),
}


class RateLimiter:
    """At most `limit` events per `window_s` seconds per key, in this process's memory.

    A soft limit against mail bombing through the "send me a link" form; with several app processes each keeps
    its own count, which only makes the limit proportionally looser.
    """

    def __init__(self, limit: int, window_s: float, now: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self.now = now
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()

    def allow(self, key: str) -> bool:
        now = self.now()
        hits = self._hits.setdefault(key, deque())
        self._hits.move_to_end(key)
        while hits and hits[0] <= now - self.window_s:
            hits.popleft()
        while len(self._hits) > 10_000:
            self._hits.popitem(last=False)
        if len(hits) >= self.limit:
            return False
        hits.append(now)
        return True


class PreferenceCenter:
    def __init__(self, settings: Settings, keys: KeyStore) -> None:
        self.settings = settings
        self.links = LinkTokens(keys, settings.issuer, settings.link_token_lifetime_s)
        self.mailer = Mailer(settings)
        self.controller = _controller(settings.policy_dir)
        self.translations = load_translations()
        self.envs = {lang: self._environment(lang, self.translations[lang]) for lang in LANGUAGES}
        self.link_requests = RateLimiter(limit=5, window_s=15 * 60)
        self._texts: dict[int, str] = {}
        self.assets = _assets()

    def _environment(self, lang: str, translations: Translations) -> Environment:
        env = Environment(
            loader=FileSystemLoader(TEMPLATES_DIR),
            autoescape=select_autoescape(["html"]),
            undefined=StrictUndefined,
            extensions=["jinja2.ext.i18n"],
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.install_gettext_translations(translations, newstyle=True)  # type: ignore[attr-defined]
        env.filters["long_date"] = lambda value: format_date(value, format="long", locale=lang) if value else ""
        env.globals.update(
            lang=lang,
            language_names=LANGUAGE_NAMES,
            channel_labels={k: translations.gettext(v) for k, v in CHANNEL_LABELS.items()},
            channel_phrases={k: translations.gettext(v) for k, v in CHANNEL_PHRASES.items()},
            basis_labels={k: translations.gettext(v) for k, v in BASIS_LABELS.items()},
            controller=self.controller,
        )
        return env

    @property
    def production(self) -> bool:
        return self.settings.environment == "production"

    def gettext(self, lang: str, message: str, **values: Any) -> str:
        text = self.translations[lang].gettext(message)
        return text % values if values else text

    def channel_phrase(self, lang: str, channel: str) -> str:
        return self.gettext(lang, CHANNEL_PHRASES[channel]) if channel in CHANNEL_PHRASES else channel

    def render(self, lang: str, template: str, **context: Any) -> str:
        return self.envs[lang].get_template(template).render(**context)

    def fragment(self, lang: str, template: str, **context: Any) -> Markup:
        """A fragment whose exact text is both shown and stored as the UI snapshot of a decision."""
        return Markup(self.render(lang, template, **context).strip())  # noqa: S704 (rendered by autoescaping Jinja)

    def url(self, path: str) -> str:
        return f"{self.settings.issuer}{path}"

    async def policy_text(self, policy_id: int) -> str:
        """The exact published Markdown of a version (immutable, so cached for the process's life)."""
        text = self._texts.get(policy_id)
        if text is None:
            row = await PolicyVersion.get(id=policy_id).only("id", "content")
            text = self._texts[policy_id] = row.content
        return text


def _controller(policy_dir: Path) -> dict[str, str]:
    """The controller's identity from `purposes.yaml` (GDPR 13(1)(a): shown on every page and mail)."""
    try:
        controller = load_tree(policy_dir).controller
    except (OSError, PolicySourceError):
        controller = {}
    return {
        "name": controller.get("name", ""),
        "address": controller.get("address", ""),
        "email": controller.get("email", ""),
    }


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
