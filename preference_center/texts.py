"""The preference center's wording: its templates and gettext catalogues per language, the labels of channels and
legal bases, and the mails to a person (the double opt-in use case's `MailTexts`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from babel.dates import format_date
from babel.support import Translations
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from server.i18n import LANGUAGE_NAMES, LANGUAGES, load_translations
from server.policies.controller import Controller

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
TRANSLATIONS_DIR = Path(__file__).resolve().parent / "translations"


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


class Texts:
    """Templates rendered per language with the controller's identity (GDPR 13(1)(a): on every page and mail)."""

    def __init__(self, controller: Controller, translations_dir: Path = TRANSLATIONS_DIR) -> None:
        self.controller = controller
        self.translations = load_translations(translations_dir)
        self.envs = {lang: self._environment(lang, self.translations[lang]) for lang in LANGUAGES}

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

    # --- the mails to a person (server.optin.service.MailTexts) ---

    def confirmation(self, lang: str, *, purpose_title: str, channel: str, link: str, days: int) -> tuple[str, str]:
        body = self.render(
            lang,
            "mail/confirmation.txt",
            purpose_title=purpose_title,
            channel=self.channel_phrase(lang, channel),
            link=link,
            days=days,
        )
        return self.gettext(lang, "Please confirm: %(purpose)s", purpose=purpose_title), body

    def preferences_link(self, lang: str, *, link: str, days: int) -> tuple[str, str]:
        body = self.render(lang, "mail/link.txt", link=link, days=days)
        return self.gettext(lang, "Your link to manage your preferences"), body
