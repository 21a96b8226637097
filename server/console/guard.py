"""`staff_guard`: the guard of console routes, which the kernel applies to every route declared `staff:<permission>`.

No valid session -> 303 to the sign-in page; a role without the permission -> 403; a POST without the session's
CSRF token (form field `csrf` or header `X-CSRF-Token`), or from another origin -> 403 (for htmx, the message in
the page's flash area: `web.flash_error`). Domain errors become a message on the page.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from server.console.web import (
    Staff,
    current_staff,
    desk_of,
    error_response,
    flash_error,
    forbidden,
    form_of,
    is_htmx,
    page,
    to_login,
)
from server.db import busy_as_domain_error
from server.errors import ConsentError
from server.staff.roles import PERMISSIONS
from server.staff.sessions import same

StaffHandler = Callable[[Request, Staff], Awaitable[Response]]
Handler = Callable[[Request], Awaitable[Response]]


def same_origin(request: Request) -> bool:
    """A POST from another site is refused even with a valid cookie (SameSite=Lax already blocks most)."""
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin is None
    own = urlsplit(desk_of(request).settings.issuer)
    given = urlsplit(origin)
    return (given.scheme, given.netloc) in {(own.scheme, own.netloc), (request.url.scheme, request.url.netloc)}


EXPIRED = "The form expired or came from another site. Reload the page and try again."


def _form_expired(request: Request, staff: Staff) -> Response:
    """403 page; for htmx (a button on a page whose session was replaced, e.g. signed out and in in another tab),
    the message in the page's flash area."""
    headers = {"X-Desk-Denied": "csrf"}
    if is_htmx(request):
        return flash_error(request, EXPIRED, headers)
    return page(request, "error.html", status=403, headers=headers, me=staff, title="Form expired", message=EXPIRED)


def staff_guard(handler: Callable[..., Awaitable[Response]], permission: str) -> Handler:
    """`handler` for staff whose role has `permission` (an unknown permission is refused when routes are built)."""
    if permission not in PERMISSIONS:
        raise KeyError(f"unknown permission {permission!r}")

    @wraps(handler)
    async def guarded(request: Request) -> Response:
        try:
            with busy_as_domain_error():  # the session is read from the database
                staff = await current_staff(request)
        except ConsentError as exc:
            return error_response(request, None, exc)
        if staff is None:
            return to_login(request)
        if not staff.can(permission):
            return forbidden(request, staff, "role")
        try:
            if request.method == "POST":
                form = await form_of(request)
                token = request.headers.get("x-csrf-token") or form.get("csrf")
                if not same(staff.csrf, token) or not same_origin(request):
                    return _form_expired(request, staff)
            with busy_as_domain_error():
                return await handler(request, staff)
        except ConsentError as exc:
            return error_response(request, staff, exc)

    return guarded
