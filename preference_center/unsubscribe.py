"""RFC 8058 one-click unsubscribe: `POST /unsubscribe/{token}` with the body `List-Unsubscribe=One-Click`.

The POST needs no cookie, login or page: a mail provider sends it on the person's behalf. It withdraws the purpose x
channel named in the token (or objects to it, where we send on legitimate interest). `GET` on the same URL only
shows a page with a button that makes the same POST: link scanners prefetch URLs in mails, so GET never
unsubscribes. The token is the capability: no other site knows it, so there is no ambient authority to forge. A
database that stays locked gets a 503 with `Retry-After` (mail providers send it again), the page with its button for
a person.
"""

from __future__ import annotations

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response

from preference_center.pages import erased_page, link_error
from preference_center.view import ON_STATUSES, Control, Row, SubjectData, build_rows, find_control, load_subject
from preference_center.web import center_of, evidence, form_fields, html
from server.db import busy_as_domain_error
from server.errors import SEND_AGAIN, InvalidTransition
from server.i18n import choose_language
from server.ledger.append import Decision, RecordRequest, Snapshot
from server.links.tokens import LinkClaims, LinkTokenRefused
from server.services import services_of

ONE_CLICK = ("List-Unsubscribe", "One-Click")


def unsubscribe_decision(control: Control) -> Decision | None:
    if control.kind == "switch" and control.answer.status in ON_STATUSES:
        return Decision(control.purpose, control.channel, "withdraw")
    if control.kind == "object" and control.answer.reason != "objected":
        return Decision(control.purpose, control.channel, "object")  # GDPR 21(3)
    return None


async def _target(
    request: Request, claims: LinkClaims, explicit_lang: str | None
) -> tuple[SubjectData, str, tuple[Row, Control] | None]:
    services = services_of(request)
    data = await load_subject(claims.ref)
    lang = choose_language(explicit_lang, data.locale or claims.lang, request.headers.get("accept-language"))
    rows = build_rows(await services.catalog.get(), data, lang, services.clock())
    return data, lang, find_control(rows, claims.purpose or "", claims.channel or "")


def _render(
    request: Request, claims: LinkClaims, lang: str, variant: str, found: tuple[Row, Control] | None, status: int = 200
) -> Response:
    center = center_of(request)
    manage, _ = center.links.issue(claims.ref, "preferences", lang=lang)
    body = center.render(
        lang,
        "unsubscribe.html",
        variant=variant,
        ask=_ask(request, lang, found),
        labels=_labels(request, lang, found),
        manage_url=f"/preferences?token={manage}&lang={lang}",
        switcher=None,
    )
    return html(request, body, status=status)


def _labels(request: Request, lang: str, found: tuple[Row, Control] | None) -> dict[str, str]:
    if found is None:
        return {"purpose": "", "channel": ""}
    center = center_of(request)
    row, control = found
    return {
        "purpose": row.purpose.titles.get(lang) or row.code,
        "channel": center.channel_phrase(lang, control.channel),
    }


def _ask(request: Request, lang: str, found: tuple[Row, Control] | None) -> Markup:
    """The question shown on the GET page: also the UI snapshot of a click on its button."""
    if found is None:
        return Markup("")
    center = center_of(request)
    return center.fragment(lang, "_unsubscribe_ask.html", labels=_labels(request, lang, found), policy=found[0].policy)


async def unsubscribe_page(request: Request) -> Response:
    """Shows what the link unsubscribes from, with a button; never writes."""
    center = center_of(request)
    try:
        claims = center.links.verify(request.path_params["token"], "unsubscribe")
    except LinkTokenRefused as exc:
        return link_error(request, exc, request.query_params.get("lang"))
    data, lang, found = await _target(request, claims, request.query_params.get("lang"))
    if data.erased:
        return erased_page(request, lang)
    if found is None:
        return _render(request, claims, lang, "unknown", None, status=404)
    variant = "ask" if unsubscribe_decision(found[1]) else "already"
    return _render(request, claims, lang, variant, found)


async def one_click(request: Request) -> Response:
    """RFC 8058 3.2: the body `List-Unsubscribe=One-Click` (urlencoded or multipart) unsubscribes."""
    services = services_of(request)
    center = center_of(request)
    fields = await form_fields(request)
    try:
        claims = center.links.verify(request.path_params["token"], "unsubscribe")
    except LinkTokenRefused as exc:
        return link_error(request, exc, fields.get("lang"))
    data, lang, found = await _target(request, claims, fields.get("lang"))
    if fields.get(ONE_CLICK[0]) != ONE_CLICK[1]:
        return _render(request, claims, lang, "not_one_click", found, status=400)
    if data.erased:
        return erased_page(request, lang)
    if found is None:
        return _render(request, claims, lang, "unknown", None, status=404)
    row, control = found
    decision = unsubscribe_decision(control)
    if decision is None:
        return _render(request, claims, lang, "already", found)
    # From our own page, the question it showed is the proof of display; from a mail client, nothing was shown by us.
    snapshot = Snapshot("unsubscribe", str(_ask(request, lang, found))) if fields.get("source") == "page" else None
    try:
        with busy_as_domain_error():
            await services.ledger.record(
                RecordRequest(
                    ref=claims.ref,
                    policy=row.policy.label,
                    decisions=[decision],
                    touchpoint="unsubscribe",
                    method="one_click",
                    actor_type="subject",
                    actor_id=None,
                    evidence=evidence(request),
                    snapshot=snapshot,
                )
            )
    except InvalidTransition:
        return _render(request, claims, lang, "already", found)
    except SEND_AGAIN:  # nothing recorded
        response = _render(request, claims, lang, "busy", found, status=503)
        response.headers["Retry-After"] = "1"
        return response
    return _render(request, claims, lang, "done", found)
