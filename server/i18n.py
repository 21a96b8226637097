"""The languages offered to people (preference center, mails, request pages): gettext catalogues (Babel) and the
choice of language per request.

The catalogues are the `.po` files under `<directory>/<lang>/LC_MESSAGES/messages.po` (the preference center's
`translations/`), compiled in memory when the app is built (Babel's `write_mo` into a buffer, a few
milliseconds). No compiled `.mo` is committed, so the binary can never drift from the reviewed `.po` text.
Message ids are the English strings; `en` keeps its `msgstr` empty and falls back to the id.
`tests/preference_center/test_static.py` checks that every marked string is in both catalogues and translated in French.

Choice of language (WCAG 3.1.1/3.1.2 `lang` attributes follow it): the switcher (`?lang=`), else the subject's
locale, else `Accept-Language`, else French (the controller's jurisdiction).
"""

from __future__ import annotations

import io
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

LANGUAGES = ("fr", "en")
DEFAULT_LANGUAGE = "fr"
LANGUAGE_NAMES = {"fr": "Français", "en": "English"}


def load_translations(directory: Path) -> dict[str, Translations]:
    """Every language's catalogue, compiled from its `.po` file."""
    loaded = {}
    for lang in LANGUAGES:
        path = directory / lang / "LC_MESSAGES" / "messages.po"
        with path.open("rb") as handle:
            catalog = read_po(handle, locale=lang)
        buffer = io.BytesIO()
        write_mo(buffer, catalog, use_fuzzy=False)
        buffer.seek(0)
        loaded[lang] = Translations(fp=buffer)
    return loaded


def supported(value: str | None) -> str | None:
    """`fr-FR` -> `fr`; None for anything we do not offer."""
    if not value:
        return None
    primary = value.strip().replace("_", "-").split("-")[0].lower()
    return primary if primary in LANGUAGES else None


def from_accept_language(header: str | None) -> str | None:
    """The best offered language of an `Accept-Language` header (RFC 9110 12.5.4), or None."""
    if not header:
        return None
    ranked: list[tuple[float, int, str]] = []
    for index, item in enumerate(header.split(",")[:32]):
        tag, _, params = item.strip().partition(";")
        quality = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                quality = float(params[2:])
            except ValueError:
                quality = 0.0
        lang = supported(tag)
        if lang and quality > 0:
            ranked.append((-quality, index, lang))
    return sorted(ranked)[0][2] if ranked else None


def choose_language(explicit: str | None, subject_locale: str | None, accept_language: str | None) -> str:
    return supported(explicit) or supported(subject_locale) or from_accept_language(accept_language) or DEFAULT_LANGUAGE
