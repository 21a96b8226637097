"""Double opt-in confirmation: the link in the confirmation mail.

`GET` shows a page with a "Confirm" button and writes nothing: mail security scanners open links in mails, and a
confirmation they could trigger would prove nothing. `POST` (the button, with its CSRF token) records `confirm`,
citing the stored copy of the mail and its Message-ID. A replayed link finds the grant no longer pending
(`confirm` is only allowed from `pending_confirmation`) and gets an "already confirmed" page; nothing is written. A
database that stays locked gets the same page again, saying nothing was saved, with its button (503, `Retry-After`).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from preference_center.csrf import link_csrf, same
from preference_center.pages import erased_page, link_error
from preference_center.view import SubjectData, load_subject
from preference_center.web import center_of, evidence, form_fields, html
from server.db import busy_as_domain_error
from server.errors import SEND_AGAIN, InvalidTransition, SubjectErased
from server.i18n import choose_language
from server.ledger.append import Decision, RecordRequest
from server.links.tokens import LinkClaims, LinkTokenRefused
from server.models import UISnapshot
from server.services import services_of

_STATUS = {"stale": 409, "busy": 503}


def _variant(data: SubjectData, claims: LinkClaims) -> str:
    state = data.states.get((claims.purpose or "", claims.channel or ""))
    if state is None:
        return "stale"
    if state.status == "pending_confirmation" and state.event_id == claims.event:
        return "ask"
    if state.status == "granted":
        return "already"
    return "stale"


async def _render(request: Request, claims: LinkClaims, data: SubjectData, variant: str, token: str) -> Response:
    services = services_of(request)
    center = center_of(request)
    lang = choose_language(
        request.query_params.get("lang"), data.locale or claims.lang, request.headers.get("accept-language")
    )
    catalog = await services.catalog.get()
    purpose = catalog.purposes.get(claims.purpose or "")
    title = (purpose.titles.get(lang) or purpose.code) if purpose else (claims.purpose or "")
    manage, _ = center.links.issue(claims.ref, "preferences", lang=lang)
    body = center.render(
        lang,
        "confirm.html",
        variant=variant,
        purpose_title=title,
        channel=center.channel_phrase(lang, claims.channel or ""),
        token=token,
        csrf=link_csrf(center.settings.secret_key, claims.jti),
        manage_url=f"/preferences?token={manage}&lang={lang}",
        switcher=None,
    )
    response = html(request, body, status=_STATUS.get(variant, 200))
    if variant == "busy":
        response.headers["Retry-After"] = "1"
    return response


async def confirm_page(request: Request) -> Response:
    center = center_of(request)
    token = request.query_params.get("token")
    try:
        claims = center.links.verify(token, "confirm")
    except LinkTokenRefused as exc:
        return link_error(request, exc, request.query_params.get("lang"))
    assert token is not None
    data = await load_subject(claims.ref)
    if data.erased:
        return erased_page(request, choose_language(None, None, request.headers.get("accept-language")))
    return await _render(request, claims, data, _variant(data, claims), token)


async def confirm(request: Request) -> Response:
    services = services_of(request)
    center = center_of(request)
    fields = await form_fields(request)
    token = fields.get("token")
    try:
        claims = center.links.verify(token, "confirm")
    except LinkTokenRefused as exc:
        return link_error(request, exc, fields.get("lang"))
    assert token is not None
    data = await load_subject(claims.ref)
    if not same(link_csrf(center.settings.secret_key, claims.jti), fields.get("csrf")):
        lang = choose_language(fields.get("lang"), data.locale, request.headers.get("accept-language"))
        back = f"/preferences/confirm?token={token}&lang={lang}"
        return html(request, center.render(lang, "csrf_error.html", back=back, switcher=None), status=403)
    if data.erased:
        return erased_page(request, choose_language(None, None, request.headers.get("accept-language")))
    variant = _variant(data, claims)
    if variant != "ask":
        return await _render(request, claims, data, variant, token)
    assert claims.purpose and claims.channel
    state = data.states[(claims.purpose, claims.channel)]
    catalog = await services.catalog.get()
    policy = catalog.policies_by_id[state.policy_version_id]
    stored = bool(claims.mail_snapshot) and await UISnapshot.exists(sha256=claims.mail_snapshot)
    try:
        with busy_as_domain_error():
            await services.ledger.record(
                RecordRequest(
                    ref=claims.ref,
                    policy=policy.label,  # the version the grant was made under, which the mail confirms
                    decisions=[Decision(claims.purpose, claims.channel, "confirm")],
                    touchpoint="preference_center",
                    method="confirm_link",
                    actor_type="subject",
                    actor_id=None,
                    evidence={**evidence(request), "message_id": claims.message_id},
                    snapshot_sha256=claims.mail_snapshot if stored else None,
                )
            )
    except SubjectErased:  # erased since the check above (GDPR 17): nothing recorded
        return erased_page(request, choose_language(None, None, request.headers.get("accept-language")))
    except InvalidTransition:  # confirmed by a concurrent click: the same answer as a replay
        return await _render(request, claims, await load_subject(claims.ref), "already", token)
    except SEND_AGAIN:  # nothing recorded: the page again, with its button
        return await _render(request, claims, data, "busy", token)
    return await _render(request, claims, data, "done", token)
