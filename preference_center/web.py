"""HTTP plumbing shared by the preference center's pages: security headers, form bodies, page context, evidence.

Headers on every page: a CSP that allows only our own scripts and styles (htmx is served from here) and framing
only by this origin and `EMBED_ORIGINS` (`frame-ancestors`); `X-Content-Type-Options: nosniff`;
`Referrer-Policy: no-referrer` so the link token in a URL never leaks to another site; `Cache-Control: no-store`
because pages carry a personal link and personal choices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from preference_center.csrf import form_token
from server.errors import ConsentError, UnstorableText
from server.kernel.bodies import read_form
from server.kernel.unstorable import refuse_in_form
from server.ledger.evidence import truncate_ip
from server.middleware.headers import served_over_https
from server.services import services_of
from server.settings import Settings

if TYPE_CHECKING:
    from preference_center.center import PreferenceCenter

LINK_COOKIE = "pc_link"
LINK_COOKIE_MAX_AGE_S = 3600


def center_of(request: Request) -> PreferenceCenter:
    center: PreferenceCenter = request.app.state.preferences
    return center


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def security_headers(settings: Settings, *, cacheable: bool = False) -> dict[str, str]:
    ancestors = " ".join(["'self'", *settings.embed_origins])
    csp = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        f"frame-src 'self'; form-action 'self'; base-uri 'none'; object-src 'none'; frame-ancestors {ancestors}"
    )
    return {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "public, max-age=3600" if cacheable else "no-store",
    }


def html(request: Request, body: str, status: int = 200, headers: dict[str, str] | None = None) -> HTMLResponse:
    settings = services_of(request).settings
    response = HTMLResponse(body, status_code=status, headers={**security_headers(settings), **(headers or {})})
    response.headers["Vary"] = "HX-Request, Accept-Language"
    return response


async def form_fields(request: Request) -> dict[str, str]:
    """The POSTed form (urlencoded or multipart), or {} for anything else: pages never crash on a bad body."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if content_type == "application/x-www-form-urlencoded":
            return await read_form(request)
        if content_type == "multipart/form-data":
            form = await request.form(max_files=0, max_fields=50, max_part_size=64 * 1024)
            fields = {k: v for k, v in form.items() if not isinstance(v, UploadFile)}
            refuse_in_form(fields)
            return fields
    except UnstorableText:  # a 400 problem, as on every other surface
        raise
    except (ConsentError, HTTPException, ValueError, KeyError):  # Starlette reports multipart errors as 400s
        return {}
    return {}


def evidence(request: Request, origin: str | None = None) -> dict[str, Any]:
    """Minimised by the ledger (IP truncated to /24 or /48, user agent cut to 256 characters). The IP is the client
    a trusted proxy names (`server.middleware.proxy`), else the socket peer."""
    data: dict[str, Any] = {
        "ip": request.client.host if request.client else None,
        "user_agent": request.headers.get("user-agent"),
    }
    if origin:
        data["origin"] = origin
    return data


def client_network(request: Request) -> str:
    """The client's network (/24 or /48): what the "send me a link" form is rate-limited by and its token bound to."""
    return truncate_ip(request.client.host if request.client else None) or "unknown"


def request_form_token(request: Request) -> str:
    """The CSRF token of a "send me a link" form shown to this client now (see `preference_center.csrf`)."""
    center = center_of(request)
    return form_token(center.settings.secret_key, client_network(request), center.links.now())


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


@dataclass(frozen=True)
class PageContext:
    """What every form of a page carries along: language, link token, CSRF token, embedding."""

    lang: str
    token: str
    csrf: str
    embed: bool = False
    parent_origin: str | None = None  # validated: the page posts its height there

    def query(self, **extra: str) -> str:
        params: dict[str, str] = {"lang": self.lang}
        if self.embed:
            params.update(token=self.token, embed="1")
            if self.parent_origin:
                params["parent_origin"] = self.parent_origin
        params.update(extra)
        return urlencode(params)

    def switcher(self, languages: tuple[str, ...], names: dict[str, str]) -> list[tuple[str, str, str]]:
        """(code, name, href) of each language; top-level pages keep the token in the session cookie."""
        result = []
        for code in languages:
            params: dict[str, str] = {"lang": code}
            if self.embed:
                params.update(token=self.token, embed="1")
                if self.parent_origin:
                    params["parent_origin"] = self.parent_origin
            result.append((code, names[code], f"/preferences?{urlencode(params)}"))
        return result


def allowed_parent(request: Request, value: str | None) -> str | None:
    """The embedding origin if it may frame us (`EMBED_ORIGINS`, or this very origin); otherwise None."""
    if not value:
        return None
    settings = services_of(request).settings
    origin = origin_of(value.strip())
    own = {origin_of(settings.issuer), f"{request.url.scheme}://{request.url.netloc}"}
    return origin if origin in settings.embed_origins or origin in own else None


def set_link_cookie(response: Response, request: Request, token: str, expires_at: int, now: float) -> None:
    """A short-lived, HttpOnly, SameSite=Lax session: reloading the page works once the token left the URL."""
    settings = services_of(request).settings
    max_age = max(0, min(LINK_COOKIE_MAX_AGE_S, int(expires_at - now)))
    response.set_cookie(
        LINK_COOKIE,
        token,
        max_age=max_age,
        path="/preferences",
        httponly=True,
        samesite="lax",
        secure=settings.issuer.startswith("https://") or served_over_https(request.scope),
    )
