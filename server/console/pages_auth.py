"""Signing in and out of the console: local accounts (argon2, CSRF-protected form) and the company's OpenID
Connect provider (authorization code + PKCE + nonce), and the console's static files."""

from __future__ import annotations

import hmac

from starlette.requests import Request
from starlette.responses import Response

from server.accesslog import log_access
from server.console.guard import same_origin
from server.console.web import HEADERS, Staff, cookies_for, current_staff, desk_of, form_of, page, redirect
from server.db import busy_as_domain_error
from server.errors import ConsentError, DatabaseBusy
from server.ledger.evidence import truncate_ip
from server.models import StaffAccount
from server.staff import accounts
from server.staff.oidc import OidcError
from server.staff.sessions import FLOW_COOKIE, LOGIN_COOKIE


def safe_next(value: str | None) -> str:
    """Only a console path: never an open redirect to another site."""
    if value and value.startswith("/console") and "//" not in value and "\\" not in value:
        return value
    return "/console"


BUSY = "The database is busy: you were not signed in. Please try again in a moment."


def _login_page(request: Request, *, error: str | None = None, email: str = "", status: int = 200) -> Response:
    desk = desk_of(request)
    token, cookie = desk.sessions.login_token(request.cookies.get(LOGIN_COOKIE))
    response = page(
        request,
        "login.html",
        status=status,
        me=None,
        flash=None,
        error=error,
        email=email,
        next=safe_next(request.query_params.get("next") or getattr(request.state, "desk_next", None)),
        login_csrf=token,
        oidc=desk.oidc is not None,
    )
    cookies_for(request).set_login(response, cookie)
    if status == 503:
        response.headers["Retry-After"] = "1"
    return response


async def _sign_in(request: Request, account: StaffAccount, method: str, next_path: str) -> Response:
    desk = desk_of(request)
    await log_access(
        at=desk.now(),
        actor_type="staff",
        actor_id=str(account.id),
        action="staff_sign_in",
        detail={"role": account.role, "method": method},
    )
    fresh = await StaffAccount.get(id=account.id)
    response = redirect(safe_next(next_path))
    cookies_for(request).set_session(response, desk.sessions.issue(fresh.id, fresh.role, fresh.session_epoch))
    response.delete_cookie(LOGIN_COOKIE, path="/console")
    return response


async def login_page(request: Request) -> Response:
    """The sign-in page (a signed-in member of staff goes straight to the console)."""
    if await current_staff(request) is not None:
        return redirect(safe_next(request.query_params.get("next")))
    return _login_page(request)


async def login(request: Request) -> Response:
    """Local account sign-in: one generic message for every failure; failures are counted per account and per
    network (the client's address cut to /24 or /48), and too many lock either (`server.staff.throttle`)."""
    desk = desk_of(request)
    try:
        form = await form_of(request)
    except ConsentError:
        form = {}
    request.state.desk_next = form.get("next")
    if not desk.sessions.login_csrf_ok(request.cookies.get(LOGIN_COOKIE), form.get("csrf")) or not same_origin(request):
        return _login_page(request, error="The form expired. Please sign in again.", status=400)
    email = form.get("email", "")
    try:
        with busy_as_domain_error():
            account = await accounts.authenticate(
                email,
                form.get("password", ""),
                desk.now(),
                network=truncate_ip(request.client.host if request.client else None),
                limits=desk.signin_limits,
            )
            return await _sign_in(request, account, "password", form.get("next", "/console"))
    except accounts.SignInRefused as exc:
        return _login_page(request, error=exc.detail, email=email[:320], status=400)
    except DatabaseBusy:  # the sign-in page again, to send again (503)
        return _login_page(request, error=BUSY, email=email[:320], status=503)


async def oidc_start(request: Request) -> Response:
    """Redirect to the company's identity provider (state, nonce and PKCE verifier kept in a signed cookie)."""
    desk = desk_of(request)
    if desk.oidc is None:
        return page(
            request,
            "error.html",
            status=404,
            me=None,
            flash=None,
            title="Not configured",
            message="Sign-in with a company account is not configured (OIDC_ISSUER).",
        )
    try:
        url, state, nonce, verifier = await desk.oidc.start()
    except OidcError as exc:
        return _login_page(request, error=exc.detail, status=502)
    response = redirect(url)
    flow = desk.sessions.issue_flow(state, nonce, verifier, safe_next(request.query_params.get("next")))
    cookies_for(request).set_flow(response, flow)
    return response


async def oidc_callback(request: Request) -> Response:
    """The provider sends the browser back here with a code: redeem it, verify the ID token, open a session."""
    desk = desk_of(request)
    flow = desk.sessions.read_flow(request.cookies.get(FLOW_COOKIE))
    state = request.query_params.get("state", "")
    if desk.oidc is None or flow is None or not hmac.compare_digest(flow["state"].encode(), state.encode()):
        response = _login_page(request, error="The sign-in expired or was not started here. Try again.", status=400)
        cookies_for(request).clear_flow(response)
        return response
    if request.query_params.get("error") or not request.query_params.get("code"):
        response = _login_page(request, error="The identity provider did not sign you in.", status=400)
        cookies_for(request).clear_flow(response)
        return response
    try:
        identity = await desk.oidc.finish(request.query_params["code"], flow["verifier"], flow["nonce"])
        with busy_as_domain_error():
            account = await accounts.oidc_account(
                issuer=identity.issuer,
                subject=identity.subject,
                email=identity.email,
                name=identity.name,
                role=identity.role,
                now=desk.now(),
            )
            response = await _sign_in(request, account, "oidc", flow["next"])
    except (OidcError, accounts.SignInRefused) as exc:
        response = _login_page(request, error=exc.detail, status=400)
    except DatabaseBusy:  # the code is spent: the person starts the sign-in again, to where they were going
        request.state.desk_next = flow["next"]
        response = _login_page(request, error=BUSY, status=503)
    cookies_for(request).clear_flow(response)
    return response


async def logout(request: Request, staff: Staff) -> Response:
    """Sign out: the cookie is cleared and the account's session epoch moves on, so a copy of it stops working."""
    desk = desk_of(request)
    await accounts.end_sessions(staff.id)
    await log_access(
        at=desk.now(), actor_type="staff", actor_id=staff.actor_id, action="staff_sign_out", detail={"role": staff.role}
    )
    response = redirect("/console/login", request)
    cookies_for(request).clear_session(response)
    return response


async def static_file(request: Request) -> Response:
    name = request.path_params["name"]
    data = desk_of(request).assets.get(name)
    if data is None:
        return Response("not found", status_code=404, media_type="text/plain")
    media = "text/css; charset=utf-8" if name.endswith(".css") else "text/javascript; charset=utf-8"
    headers = {**HEADERS, "Cache-Control": "public, max-age=3600"}
    return Response(data, media_type=media, headers=headers)
