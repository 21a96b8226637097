"""The preference center page (`GET /preferences`), its error pages, and what every form POST shares.

Each form (see `forms.py`) works as a plain HTML form (the answer is the whole page) and, with htmx, saves on
click and swaps only what changed, with a status message in a live region (WCAG 4.1.3). Every POST carries the link
token and its CSRF token; a missing or wrong CSRF token gets a 403 page and writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response

from preference_center.center import PreferenceCenter
from preference_center.csrf import link_csrf, same
from preference_center.diff import section_diff
from preference_center.view import Row, SubjectData, build_rows, load_subject
from preference_center.web import (
    LINK_COOKIE,
    PageContext,
    allowed_parent,
    center_of,
    evidence,
    form_fields,
    html,
    is_htmx,
    request_form_token,
    set_link_cookie,
)
from server.db import busy_as_domain_error
from server.errors import ConsentError
from server.i18n import LANGUAGE_NAMES, LANGUAGES, choose_language
from server.ledger.append import Decision, RecordRequest, RecordResult, Snapshot
from server.links.tokens import LinkClaims, LinkTokenRefused
from server.optin.service import Recorded
from server.services import services_of

# --- rendering ------------------------------------------------------------------------------------------------------


async def fragments(center: PreferenceCenter, lang: str, rows: list[Row]) -> dict[str, Markup]:
    """Every fragment of the page, each rendered once: what is shown is exactly what a decision stores."""
    shown: dict[str, Markup] = {"all": center.fragment(lang, "_all.html")}
    for row in rows:
        shown[f"row-{row.code}"] = center.fragment(lang, "_row.html", row=row)
        if row.reconsent is not None:
            shown[f"reconsent-{row.code}"] = await reconsent_fragment(center, lang, row)
    return shown


async def reconsent_fragment(center: PreferenceCenter, lang: str, row: Row) -> Markup:
    assert row.reconsent is not None
    old = await center.policy_text(row.reconsent.accepted.id)
    new = await center.policy_text(row.reconsent.current.id)
    return center.fragment(lang, "_reconsent.html", row=row, reconsent=row.reconsent, sections=section_diff(old, new))


async def page_body(
    request: Request, ctx: PageContext, data: SubjectData, notice: str | None = None
) -> tuple[str, list[Row], dict[str, Markup]]:
    services = services_of(request)
    center = center_of(request)
    rows = build_rows(await services.catalog.get(), data, ctx.lang, services.clock())
    shown = await fragments(center, ctx.lang, rows)
    body = center.render(
        ctx.lang,
        "preferences.html",
        ctx=ctx,
        rows=rows,
        fragments=shown,
        notice=notice,
        switcher=ctx.switcher(LANGUAGES, LANGUAGE_NAMES),
    )
    return body, rows, shown


def link_error(request: Request, exc: LinkTokenRefused, explicit_lang: str | None = None) -> Response:
    """The friendly page for a missing, tampered, expired or misused link: it offers a new link."""
    center = center_of(request)
    lang = choose_language(explicit_lang, None, request.headers.get("accept-language"))
    body = center.render(
        lang,
        "link_error.html",
        reason=exc.reason,
        form_csrf=request_form_token(request),
        email_error=None,
        typed_email="",
        switcher=None,
    )
    response = html(request, body, status=403)
    if exc.reason != "missing":
        response.delete_cookie(LINK_COOKIE, path="/preferences")
    return response


def csrf_error(request: Request, ctx: PageContext) -> Response:
    center = center_of(request)
    body = center.render(ctx.lang, "csrf_error.html", ctx=ctx, back=f"/preferences?{ctx.query()}", switcher=None)
    return html(request, body, status=403)


def erased_page(request: Request, lang: str) -> Response:
    center = center_of(request)
    return html(request, center.render(lang, "erased.html", switcher=None), status=410)


def unavailable_page(request: Request, exc: ConsentError) -> Response:
    """The database or the disk could not be used (503, Retry-After): a page of the center saying so, in the
    visitor's language. An htmx save that meets it is not swapped in (no X-Preference-Answer): preferences.js
    shows its generic "not saved" message in the page's status region, and the rows stay as they were."""
    center = center_of(request)
    lang = choose_language(request.query_params.get("lang"), None, request.headers.get("accept-language"))
    return html(request, center.render(lang, "unavailable.html", switcher=None), 503, {"Retry-After": "1"})


# --- GET /preferences -----------------------------------------------------------------------------------------------


async def preferences_page(request: Request) -> Response:
    """The preference center, opened with a link token (`?token=`, or the session cookie set by that visit)."""
    center = center_of(request)
    query = request.query_params
    token = query.get("token") or request.cookies.get(LINK_COOKIE)
    embed = query.get("embed") == "1"
    try:
        claims = center.links.verify(token, "preferences")
    except LinkTokenRefused as exc:
        return link_error(request, exc, query.get("lang"))
    assert token is not None
    data = await load_subject(claims.ref)
    lang = _language(request, query.get("lang"), data, claims)
    if data.erased:
        return erased_page(request, lang)
    parent = allowed_parent(request, query.get("parent_origin")) if embed else None
    ctx = PageContext(lang, token, link_csrf(center.settings.secret_key, claims.jti), embed, parent)
    body, _, _ = await page_body(request, ctx, data)
    response = html(request, body)
    if query.get("token") and not embed:
        set_link_cookie(response, request, token, claims.expires_at, center.links.now())
    return response


def _language(request: Request, explicit: str | None, data: SubjectData, claims: LinkClaims) -> str:
    return choose_language(explicit, data.locale or claims.lang, request.headers.get("accept-language"))


# --- POST helpers ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Posted:
    fields: dict[str, str]
    claims: LinkClaims
    ctx: PageContext
    data: SubjectData


async def posted(request: Request) -> Posted | Response:
    """The verified link token, checked CSRF token and page context of a form POST, or the page refusing it."""
    center = center_of(request)
    fields = await form_fields(request)
    token = fields.get("token") or request.cookies.get(LINK_COOKIE)
    try:
        claims = center.links.verify(token, "preferences")
    except LinkTokenRefused as exc:
        return link_error(request, exc, fields.get("lang"))
    assert token is not None
    data = await load_subject(claims.ref)
    lang = _language(request, fields.get("lang"), data, claims)
    embed = fields.get("embed") == "1"
    parent = allowed_parent(request, fields.get("parent_origin")) if embed else None
    expected = link_csrf(center.settings.secret_key, claims.jti)
    ctx = PageContext(lang, token, expected, embed, parent)
    if not same(expected, fields.get("csrf")):
        return csrf_error(request, ctx)
    if data.erased:
        return erased_page(request, lang)
    return Posted(fields, claims, ctx, data)


async def record(
    request: Request, p: Posted, policy: str, decisions: list[Decision], method: str, shown: Markup
) -> RecordResult:
    """The decisions recorded for the person of the link; `DatabaseBusy` when the database stayed locked (nothing
    recorded: the form says so and the person can send it again)."""
    services = services_of(request)
    with busy_as_domain_error():
        return await services.ledger.record(_request(request, p, policy, decisions, method, shown))


async def record_and_confirm(
    request: Request, p: Posted, policy: str, decisions: list[Decision], method: str, shown: Markup
) -> Recorded:
    """`record`, then the double opt-in mail of a grant it leaves pending, in the page's language (`OptIn`)."""
    with busy_as_domain_error():
        recorded = await center_of(request).optin.record(
            _request(request, p, policy, decisions, method, shown), lang=p.ctx.lang
        )
    return recorded


def _request(
    request: Request, p: Posted, policy: str, decisions: list[Decision], method: str, shown: Markup
) -> RecordRequest:
    return RecordRequest(
        ref=p.claims.ref,
        policy=policy,
        decisions=decisions,
        touchpoint="preference_center",
        method=method,
        actor_type="subject",
        actor_id=None,
        evidence=evidence(request, p.ctx.parent_origin),
        snapshot=Snapshot("preference_center", str(shown)),
    )


ANSWER_HEADER = "X-Preference-Answer"  # preferences.js swaps an htmx answer with it whatever its status


async def answer(request: Request, p: Posted, notice: str, *, target: str | None = None, status: int = 200) -> Response:
    """htmx: the changed fragment (`target` row, or the whole content) and the status message out of band.
    Without JavaScript: the whole page with the status message.

    A refusal keeps its status (400, 409, 429, 503) and is marked with `ANSWER_HEADER`: htmx 2 swaps no 4xx/5xx
    answer by default, and the page script swaps only these, so the person reads why (a proxy's error page or a
    crash gets the page's generic message instead)."""
    center = center_of(request)
    data = await load_subject(p.claims.ref)
    body, rows, shown = await page_body(request, p.ctx, data, notice)
    if not is_htmx(request):
        return html(request, body, status=status)
    oob = Markup('<div id="pc-status" hx-swap-oob="innerHTML">{}</div>').format(notice)
    # A row alone, unless a re-consent question about it appears or disappears elsewhere on the page.
    if target is not None and f"row-{target}" in shown and f"reconsent-{target}" not in shown:
        return html(request, str(shown[f"row-{target}"] + oob), status=status, headers={ANSWER_HEADER: "1"})
    content = center.render(p.ctx.lang, "_content.html", ctx=p.ctx, rows=rows, fragments=shown)
    headers = {"HX-Retarget": "#pc-content", "HX-Reswap": "outerHTML", ANSWER_HEADER: "1"}
    return html(request, str(Markup(content) + oob), status=status, headers=headers)  # noqa: S704 (rendered by Jinja)
