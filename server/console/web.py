"""HTTP plumbing of the console: the staff member behind a request, page rendering with security headers, forms,
and the access-log entry every staff action writes (GDPR 5(2), 32).

Headers on every console page: a CSP allowing only our own scripts and styles (htmx from the preference center's
static files), no framing at all, `no-store` caching (pages show personal data), no referrer to other sites.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from server.accesslog import log_access
from server.errors import SEND_AGAIN, ConsentError
from server.kernel.bodies import read_form
from server.middleware.headers import served_over_https
from server.models import StaffAccount
from server.staff.roles import can
from server.staff.sessions import SESSION_COOKIE, SessionCodec

if TYPE_CHECKING:
    from server.console.desk import Desk

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
# A breach form holds several texts of up to 10,000 characters, which URL-encoding can make six times longer.
CONSOLE_FORM_LIMIT = 512 * 1024
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # no-referrer would make browsers send `Origin: null` on form posts
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class Staff:
    """The signed-in member of staff."""

    id: int
    name: str
    email: str
    role: str
    csrf: str

    def can(self, permission: str) -> bool:
        return can(self.role, permission)

    @property
    def actor_id(self) -> str:
        return str(self.id)


def desk_of(request: Request) -> Desk:
    desk: Desk = request.app.state.desk
    return desk


def cookies_for(request: Request) -> SessionCodec:
    """The session codec that sets and clears this response's cookies: Secure when PUBLIC_URL is https or the
    request came over https (directly or through a trusted proxy, `server.middleware.proxy`)."""
    return desk_of(request).sessions.over(served_over_https(request.scope))


async def current_staff(request: Request) -> Staff | None:
    """The staff member of a valid session cookie whose account is active, with the same role and epoch."""
    desk = desk_of(request)
    session = desk.sessions.read(request.cookies.get(SESSION_COOKIE))
    if session is None:
        return None
    account = await StaffAccount.get_or_none(id=session.staff_id)
    if (
        account is None
        or account.disabled_at is not None
        or account.role != session.role
        or account.session_epoch != session.epoch
    ):
        return None
    return Staff(account.id, account.name, account.email, account.role, session.csrf)


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def page(
    request: Request, template: str, status: int = 200, headers: dict[str, str] | None = None, **context: Any
) -> HTMLResponse:
    context.setdefault("flash", None)
    context.setdefault("me", None)
    body = desk_of(request).render(template, request_path=request.url.path, **context)
    response = HTMLResponse(body, status_code=status, headers={**HEADERS, **(headers or {})})
    response.headers["Vary"] = "HX-Request, Cookie"
    return response


def redirect(path: str, request: Request | None = None) -> Response:
    """303 to `path`; an htmx request gets `HX-Redirect` instead (htmx follows it with a full page load)."""
    if request is not None and is_htmx(request):
        return Response(status_code=204, headers={"HX-Redirect": path, **HEADERS})
    return RedirectResponse(path, status_code=303, headers=HEADERS)


def to_login(request: Request) -> Response:
    target = request.url.path if request.method == "GET" else "/console"
    if request.method == "GET" and request.url.query:
        target += "?" + request.url.query
    return redirect(f"/console/login?next={quote(target, safe='')}", request)


def flash_error(request: Request, message: str, headers: dict[str, str] | None = None) -> Response:
    """An error for an htmx request: a message swapped into the page's `#flash` area.

    Answered 200: htmx 2 swaps no 4xx or 5xx response by default (`responseHandling`), so a refusal sent with its
    real status would leave the page unchanged and the button would seem to do nothing. Headers such as
    `X-Desk-Denied` still say what was refused; nothing was changed."""
    return page(
        request,
        "_flash.html",
        headers={"HX-Retarget": "#flash", "HX-Reswap": "innerHTML", **(headers or {})},
        kind="error",
        message=message,
    )


def error_response(request: Request, staff: Staff | None, exc: ConsentError) -> Response:
    """A domain error as a message: a fragment in the flash area for htmx, a page otherwise."""
    retry = {"Retry-After": "1"} if isinstance(exc, SEND_AGAIN) else {}
    if is_htmx(request):
        return flash_error(request, exc.detail, retry)
    return page(request, "error.html", status=exc.status, headers=retry, me=staff, title=exc.title, message=exc.detail)


def unavailable_page(request: Request, exc: ConsentError) -> Response:
    """The desk's answer when the database or the disk could not be used (503, Retry-After): its error page, or a
    message in the flash area for htmx, as for any other refusal."""
    return error_response(request, None, exc)


def forbidden(request: Request, staff: Staff, reason: str = "object") -> Response:
    """403. `X-Desk-Denied` says whether the role lacks the route's permission (`role`) or the object is not
    theirs to act on (`object`, e.g. an agent and someone else's request)."""
    message = "Your role does not allow this." if reason == "role" else "This is not yours to act on."
    if is_htmx(request):
        return flash_error(request, message, {"X-Desk-Denied": reason})
    return page(
        request,
        "error.html",
        status=403,
        headers={"X-Desk-Denied": reason},
        me=staff,
        title="Not allowed",
        message=message,
    )


async def form_of(request: Request) -> dict[str, str]:
    """The urlencoded form of a POST (read once by the guard for its CSRF check, then kept)."""
    cached = getattr(request.state, "desk_form", None)
    if cached is None:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        form = content_type == "application/x-www-form-urlencoded"
        cached = await read_form(request, CONSOLE_FORM_LIMIT) if form else {}
        request.state.desk_form = cached
    return dict(cached)


async def staff_names() -> dict[str, str]:
    """Each staff account's actor id (`staff:<id>`, as history and trail rows name them) with "Name (role)"."""
    accounts = await StaffAccount.all().values("id", "name", "role")
    return {f"staff:{a['id']}": f"{a['name']} ({a['role']})" for a in accounts}


async def audit(request: Request, staff: Staff, action: str, subject_id: Any = None, **detail: Any) -> None:
    """One access-log row per staff action (actor_type "staff"); details never carry contact data."""
    await log_access(
        at=desk_of(request).now(),
        actor_type="staff",
        actor_id=staff.actor_id,
        action=action,
        subject_id=subject_id,
        detail={"role": staff.role, **detail},
    )
