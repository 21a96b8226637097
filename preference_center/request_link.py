"""The "send me a link" form (`/preferences/request-link`): mails a link to the preference center to a known
address. No link token here, so CSRF is a signed form token bound to the client's network, without a cookie (it
also works inside the embed iframe on another site, see `preference_center.csrf`); rate-limited per network."""

from __future__ import annotations

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response

from preference_center.center import LINK_RULE, PreferenceCenter
from preference_center.csrf import cross_site_post, form_token_valid
from preference_center.web import center_of, client_network, form_fields, html, request_form_token
from server.i18n import LANGUAGE_NAMES, LANGUAGES, choose_language, supported
from server.models import Subject


async def request_link_form(request: Request) -> Response:
    """A form that mails a link to the preference center to a known address."""
    center = center_of(request)
    lang = choose_language(request.query_params.get("lang"), None, request.headers.get("accept-language"))
    return _request_form(request, center, lang)


def _request_form(
    request: Request,
    center: PreferenceCenter,
    lang: str,
    status: int = 200,
    error: str | None = None,
    typed_email: str = "",
) -> Response:
    """The form; after an error, with the address as typed (escaped by the template) so it can be corrected."""
    body = center.render(
        lang,
        "request_link.html",
        form_csrf=request_form_token(request),
        email_error=error,
        typed_email=typed_email[:320],
        switcher=[(code, LANGUAGE_NAMES[code], f"/preferences/request-link?lang={code}") for code in LANGUAGES],
    )
    return html(request, body, status=status)


async def request_link(request: Request) -> Response:
    """Same answer whether or not the address is known; the lookup and the mail happen after the answer is sent,
    so its timing tells nothing either. Rate-limited per truncated IP address."""
    center = center_of(request)
    fields = await form_fields(request)
    lang = supported(fields.get("lang")) or choose_language(None, None, request.headers.get("accept-language"))
    email = fields.get("email", "").strip()
    network = client_network(request)
    token_valid = form_token_valid(center.settings.secret_key, fields.get("csrf"), network, center.links.now())
    if not token_valid or cross_site_post(request.headers.get("sec-fetch-site")):
        error = center.gettext(lang, "For your security, please send the form again.")
        return _request_form(request, center, lang, status=400, error=error, typed_email=email)
    if not _plausible_email(email):
        error = center.gettext(lang, "Please enter an email address, for example name@example.com.")
        return _request_form(request, center, lang, status=400, error=error, typed_email=email)
    if not await center.limiter.allow(LINK_RULE, network):
        error = center.gettext(lang, "Too many requests from your network. Please try again in a few minutes.")
        return _request_form(request, center, lang, status=429, error=error, typed_email=email)
    body = center.render(lang, "request_link_sent.html", switcher=None)
    response = html(request, body)
    response.background = BackgroundTask(_mail_links, center, email, lang)
    return response


async def _mail_links(center: PreferenceCenter, email: str, lang: str) -> None:
    subjects = await Subject.filter(email__iexact=email, erased_at__isnull=True).limit(5).only("ref", "locale")
    for subject in subjects:
        language = supported(subject.locale) or lang
        await center.optin.send_preferences_link(ref=subject.ref, email=email, lang=language)


def _plausible_email(value: str) -> bool:
    local, at, domain = value.rpartition("@")
    return (
        bool(at and local and "." in domain)
        and len(value) <= 320
        and not any(ch.isspace() or ord(ch) < 32 for ch in value)
    )
