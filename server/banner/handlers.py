"""HTTP handlers of the banner: config, record, preflights, the script, GPC support resource, the demo page.

Refusals of the public endpoints are domain errors (`server.banner.errors`, `server.errors`), answered here as
problem+json with the CORS headers added, so the banner on an allowed site can read why it was refused.
"""

from __future__ import annotations

from pathlib import Path

import orjson
from starlette.requests import Request
from starlette.responses import Response

from server.banner.bundle import WIDGET_DIR, Bundle
from server.banner.choices import record_once
from server.banner.cors import cors_headers, origin_of, preflight_headers, require_origin
from server.banner.errors import TooManyRequests
from server.banner.record import Evidence
from server.banner.schemas import CookieConsentIn
from server.banner.service import BannerService
from server.db import busy_as_domain_error
from server.errors import ConsentError, InvalidRequest, MalformedBody, NotFound
from server.kernel.bodies import read_body, validate
from server.kernel.problems import consent_error
from server.kernel.unstorable import refuse_in_json
from server.ledger.evidence import truncate_ip
from server.services import services_of

BODY_LIMIT = 4096  # a choice is ~300 bytes; anything near this is not a banner
CONFIG_CACHE = "public, max-age=300"  # a new cookie-policy version reaches visitors within 5 minutes
# /widgets/banner.js is what sites include: the banner must run synchronously before their tags (Consent Mode
# default), so it is the script itself, not a loader that would add a round trip. It is cached briefly and
# revalidated with its ETag (a 304 costs no body); the content-hashed URL is immutable, for sites pinning a version
# with Subresource Integrity.
SCRIPT_CACHE = "public, max-age=300"
IMMUTABLE = "public, max-age=31536000, immutable"
DEMO_DIR = WIDGET_DIR / "demo"
DEMO_ASSETS = {"analytics.js": "text/javascript; charset=utf-8", "ad.html": "text/html; charset=utf-8"}


def _banner(request: Request) -> BannerService:
    banner: BannerService = request.app.state.banner
    return banner


async def _refusal(request: Request, exc: ConsentError, headers: dict[str, str]) -> Response:
    response = await consent_error(request, exc)
    response.headers.update(headers)
    if isinstance(exc, TooManyRequests):
        response.headers["Retry-After"] = str(exc.retry_after)
    if "retry-after" in response.headers and "access-control-allow-origin" in response.headers:
        # Not a CORS-safelisted response header: the banner reads when to send the choice again only if exposed.
        response.headers["Access-Control-Expose-Headers"] = "Retry-After"
    return response


async def refused_before(request: Request, exc: ConsentError) -> Response:
    """A refusal made before a CORS route's handler runs (a NUL in its path, query or a header: the kernel's check,
    `Endpoint.refusal`), with the CORS headers its handler would give, so that the banner reads it too: the
    site's origins when the query names a site, else every site's."""
    banner = _banner(request)
    site = banner.tree.sites.get(request.query_params.get("site") or "")
    return await _refusal(request, exc, cors_headers(origin_of(request), site.origins if site else banner.origins))


def _json(body: bytes, headers: dict[str, str], status: int = 200) -> Response:
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def _not_modified(request: Request, etag: str) -> bool:
    tags = {t.strip().removeprefix("W/") for t in request.headers.get("if-none-match", "").split(",")}
    return etag in tags or "*" in tags


async def banner_config(request: Request) -> Response:
    """The site's categories, texts per language, cookie-policy version, cookies to delete, re-prompt interval."""
    banner = _banner(request)
    site_id = request.query_params.get("site")
    if not site_id:
        raise InvalidRequest("the query parameter site is required", parameter="site")
    site = banner.site(site_id, status=404)
    cors = cors_headers(origin_of(request), site.origins)
    try:
        with busy_as_domain_error():  # refused with CORS, so that the banner reads why (and asks again later)
            config = await banner.config(site)
    except ConsentError as exc:
        return await _refusal(request, exc, cors)
    headers = {"Cache-Control": CONFIG_CACHE, "ETag": config.etag, **cors}
    if _not_modified(request, config.etag):
        return Response(status_code=304, headers=headers)
    return _json(config.body, headers)


async def config_preflight(request: Request) -> Response:
    banner = _banner(request)
    site = banner.tree.sites.get(request.query_params.get("site") or "")
    allowed = site.origins if site else banner.origins
    origin = origin_of(request)
    try:
        return Response(status_code=204, headers=preflight_headers(require_origin(origin, allowed), "GET"))
    except ConsentError as exc:
        return await _refusal(request, exc, cors_headers(origin, allowed))


async def record_preflight(request: Request) -> Response:
    banner = _banner(request)
    origin = origin_of(request)
    try:
        return Response(status_code=204, headers=preflight_headers(require_origin(origin, banner.origins), "POST"))
    except ConsentError as exc:
        return await _refusal(request, exc, cors_headers(origin, banner.origins))


async def record_cookie_consent(request: Request) -> Response:
    """Record one banner choice for the visitor's random consent id; returns the events and a signed receipt."""
    services = services_of(request)
    banner = _banner(request)
    origin = origin_of(request)
    headers = cors_headers(origin, banner.origins)
    try:
        origin = require_origin(origin, banner.origins)
        choice = await _read_choice(request)
        await _within_limits(banner, request, choice)
        site = banner.site(choice.site)
        headers = cors_headers(origin, site.origins)
        require_origin(origin, site.origins)
        with busy_as_domain_error():
            config = await banner.config(site)
        evidence = Evidence(
            # The socket peer, or the client a trusted proxy names (FORWARDED_ALLOW_IPS, server.middleware.proxy).
            ip=request.client.host if request.client else None,
            user_agent=request.headers.get("user-agent"),
            origin=origin,
            gpc_header=request.headers.get("sec-gpc", "").strip() == "1",
        )
        # A busy or unreachable database, a full disk: refused with CORS too, so that the banner reads why and
        # sends the choice again.
        with busy_as_domain_error():
            answer = await record_once(services, banner, site, config, choice, evidence)
    except ConsentError as exc:
        return await _refusal(request, exc, headers)
    body = {
        "consent_id": choice.consent_id,
        "policy_version": answer.policy,
        "ui_snapshot": answer.snapshot,
        "touchpoint": answer.touchpoint,
        "events": answer.events,
        "receipt": answer.receipt,
    }
    return _json(orjson.dumps(body), {**headers, "Cache-Control": "no-store"})


async def _within_limits(banner: BannerService, request: Request, choice: CookieConsentIn) -> None:
    """One count per record for its consent id and one for its network, in one call to the shared store; a
    refusal says when to send again (the banner keeps the choice and does)."""
    limits = banner.limits
    network = truncate_ip(request.client.host if request.client else None) or "unknown"
    wait = await limits.limiter.hit((limits.per_consent, choice.consent_id), (limits.per_network, network))
    if wait is not None:
        raise TooManyRequests(
            f"over {limits.per_consent.limit} records a minute for this consent id or "
            f"{limits.per_network.limit} from this network; send it again in {wait} s",
            retry_after=wait,
        )


async def _read_choice(request: Request) -> CookieConsentIn:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise MalformedBody(f"expected Content-Type application/json, got {content_type[:64] or 'none'!r}")
    raw = await read_body(request, BODY_LIMIT)
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedBody(f"the body is not valid JSON: {exc}") from None
    refuse_in_json(raw, data)
    return validate(CookieConsentIn, data)


def _script(request: Request, bundle: Bundle, cache: str) -> Response:
    headers = {
        "Cache-Control": cache,
        "ETag": bundle.etag,
        "Vary": "Accept-Encoding",
        "X-Content-Type-Options": "nosniff",
        # Public, credential-free: any page may load it, with Subresource Integrity (crossorigin="anonymous") too.
        "Access-Control-Allow-Origin": "*",
        "Cross-Origin-Resource-Policy": "cross-origin",
    }
    if _not_modified(request, bundle.etag):
        return Response(status_code=304, headers=headers)
    body = bundle.js
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        body = bundle.js_gzip
    return Response(body, media_type="text/javascript; charset=utf-8", headers=headers)


async def banner_script(request: Request) -> Response:
    """The banner (JS with its CSS inlined); place it before any tag it governs."""
    bundle = _banner(request).bundle
    response = _script(request, bundle, SCRIPT_CACHE)
    response.headers["Link"] = f'</widgets/banner.{bundle.digest}.js>; rel="canonical"'  # the URL to pin
    return response


async def banner_script_pinned(request: Request) -> Response:
    """The same bytes under their content hash, cached for a year."""
    bundle = _banner(request).bundle
    if request.path_params["digest"] != bundle.digest:
        raise NotFound("no banner build with this hash; /widgets/banner.js is the current one", parameter="digest")
    return _script(request, bundle, IMMUTABLE)


async def gpc_support(request: Request) -> Response:
    """W3C Global Privacy Control support resource: this service honours the signal (banner and record)."""
    banner = _banner(request)
    services = services_of(request)
    last_update = banner.tree.gpc_last_update or services.clock().date().isoformat()
    body = orjson.dumps({"gpc": True, "lastUpdate": last_update})
    return _json(body, {"Cache-Control": "public, max-age=86400", "Access-Control-Allow-Origin": "*"})


def _fill(path: Path, issuer: str) -> bytes:
    text = path.read_text(encoding="utf-8")
    return text.replace("{{API}}", issuer).replace("{{ASSETS}}", f"{issuer}/demo/banner").encode("utf-8")


async def demo_page(request: Request) -> Response:
    """A demo shop page with blocked tags: open it, choose, watch what runs (site `demo`)."""
    body = _fill(DEMO_DIR / "index.html", _banner(request).issuer)
    return Response(body, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-store"})


async def demo_asset(request: Request) -> Response:
    """The demo page's blocked resources."""
    name = request.path_params["asset"]
    if name not in DEMO_ASSETS:
        raise NotFound("no such demo asset", parameter="asset")
    return Response(_fill(DEMO_DIR / name, _banner(request).issuer), media_type=DEMO_ASSETS[name])
