"""Static files, the embed loader, and the development-only pages: `/demo` (a fake shop embedding the preference
center) and `/dev/mail` (the outbox of mails written when no SMTP server is configured). Both answer 404 when
`ENVIRONMENT=production`."""

from __future__ import annotations

import email
import email.policy
import re
import uuid

from markupsafe import Markup, escape
from starlette.requests import Request
from starlette.responses import Response
from tortoise.exceptions import IntegrityError

from preference_center.web import center_of, html, security_headers
from server.errors import NotFound
from server.i18n import LANGUAGE_NAMES, LANGUAGES, choose_language
from server.ledger.evidence import pseudonym
from server.models import Subject
from server.services import services_of

DEMO_REF = "demo-alice"
DEMO_EMAIL = "alice@demo-shop.example"
_MAIL_NAME = re.compile(r"^[0-9]{20}-[0-9a-f]{8}\.eml$")
_URL = re.compile(r"https?://[^\s<>\"']+")


async def static_file(request: Request) -> Response:
    """Vendored htmx, the page's own script and style sheet."""
    center = center_of(request)
    name = request.path_params["name"]
    asset = center.assets.get(name)
    if asset is None or name == "embed.js":
        raise NotFound("no such static file")
    return Response(asset[0], media_type=asset[1], headers=security_headers(center.settings, cacheable=True))


async def embed_script(request: Request) -> Response:
    """`<script src="/widgets/embed.js" data-token="...">`: puts the preference center in an iframe."""
    center = center_of(request)
    asset = center.assets.get("embed.js")
    if asset is None:
        raise NotFound("the embed script is not built")
    headers = {
        "Cache-Control": "public, max-age=300",
        "X-Content-Type-Options": "nosniff",
        "Cross-Origin-Resource-Policy": "cross-origin",  # loaded by the company's pages, on other origins
    }
    return Response(asset[0], media_type=asset[1], headers=headers)


async def _demo_subject(secret: str) -> None:
    """The demo subject gets an address so that double opt-in can be clicked through in `/dev/mail`."""
    subject = await Subject.get_or_none(ref=DEMO_REF)
    if subject is None:
        try:
            await Subject.create(id=uuid.uuid4(), ref=DEMO_REF, pseudonym=pseudonym(secret, DEMO_REF), email=DEMO_EMAIL)
        except IntegrityError:
            return
    elif subject.email is None and subject.erased_at is None:
        await Subject.filter(id=subject.id).update(email=DEMO_EMAIL)


async def demo(request: Request) -> Response:
    """A fake shop page that embeds the preference center of `demo-alice` (a fresh link at every visit)."""
    services = services_of(request)
    center = center_of(request)
    lang = choose_language(request.query_params.get("lang"), None, request.headers.get("accept-language"))
    await _demo_subject(services.settings.secret_key)
    token, _ = center.links.issue(DEMO_REF, "preferences")
    body = center.render(
        lang,
        "demo.html",
        token=token,
        mail_outbox=center.mailer.uses_outbox,
        switcher=[(code, LANGUAGE_NAMES[code], f"/demo?lang={code}") for code in LANGUAGES],
    )
    return html(request, body)


async def dev_mail(request: Request) -> Response:
    """The dev outbox: every mail written to MAIL_DIR, newest first."""
    center = center_of(request)
    lang = choose_language(request.query_params.get("lang"), None, request.headers.get("accept-language"))
    mails = []
    for path in center.mailer.outbox()[:200]:
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        mails.append({"name": path.name, "to": message["To"], "subject": message["Subject"], "date": message["Date"]})
    body = center.render(lang, "dev_mail.html", mails=mails, smtp=not center.mailer.uses_outbox, switcher=None)
    return html(request, body)


async def dev_mail_message(request: Request) -> Response:
    """One mail of the dev outbox, its links clickable."""
    center = center_of(request)
    name = request.path_params["name"]
    path = center.settings.mail_dir / name
    if not _MAIL_NAME.fullmatch(name) or not path.is_file():
        raise NotFound("no such mail")
    lang = choose_language(request.query_params.get("lang"), None, request.headers.get("accept-language"))
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    part = message.get_body(preferencelist=("plain",))
    text = part.get_content() if part is not None else ""
    headers = [(k, str(v)) for k, v in message.items()]
    body = center.render(lang, "dev_mail_message.html", headers=headers, text=_linkify(text), switcher=None)
    return html(request, body)


def _linkify(text: str) -> Markup:
    out, last = [], 0
    for match in _URL.finditer(text):
        out.append(escape(text[last : match.start()]))
        url = escape(match.group(0))
        out.append(Markup('<a href="{}">{}</a>').format(url, url))
        last = match.end()
    out.append(escape(text[last:]))
    return Markup("").join(out)
