"""The banner's endpoints, listed in `server.api.routes.ENDPOINTS`; every one is public (the record endpoint is
limited by CORS origin, body size and a per-network rate instead of a token)."""

from __future__ import annotations

from server.banner import handlers
from server.banner.schemas import CookieConsentIn, CookieConsentOut
from server.kernel.endpoints import PUBLIC, Endpoint, Param

SITE = Param("site", "query", "site id from policy_docs/sites.yaml", required=True)

BANNER_ENDPOINTS: list[Endpoint] = [
    Endpoint(
        "/v1/banner/config",
        "GET",
        handlers.banner_config,
        PUBLIC,
        "Cookie-banner configuration of a site (cacheable; CORS for the site's origins)",
        "banner",
        refusal=handlers.refused_before,
        params=[SITE],
    ),
    Endpoint(
        "/v1/banner/config",
        "OPTIONS",
        handlers.config_preflight,
        PUBLIC,
        "CORS preflight",
        "banner",
        refusal=handlers.refused_before,
    ),
    Endpoint(
        "/v1/cookie-consents",
        "POST",
        handlers.record_cookie_consent,
        PUBLIC,
        "Record a cookie-banner choice (CORS, 4 KB, rate-limited, once per choice_id); returns a signed receipt",
        "banner",
        refusal=handlers.refused_before,
        body=CookieConsentIn,
        response=CookieConsentOut,
        responses={
            "400": "no Origin header, or a body that is not JSON",
            "403": "the Origin is not one of the site's (sites.yaml)",
            "409": "this choice id was recorded with other content",
            "422": "the banner text shown is not the text served for that site, language and policy version",
            "429": "too many choices for this consent id or from this network; Retry-After says when",
        },
    ),
    Endpoint(
        "/v1/cookie-consents",
        "OPTIONS",
        handlers.record_preflight,
        PUBLIC,
        "CORS preflight",
        "banner",
        refusal=handlers.refused_before,
    ),
    Endpoint(
        "/widgets/banner.js",
        "GET",
        handlers.banner_script,
        PUBLIC,
        "The cookie banner script (short cache, ETag)",
        "banner",
        response_media_type="text/javascript",
    ),
    Endpoint(
        "/widgets/banner.{digest}.js",
        "GET",
        handlers.banner_script_pinned,
        PUBLIC,
        "The cookie banner script under its content hash (immutable)",
        "banner",
        params=[Param("digest", "path", "first 16 hex digits of the script's SHA-256")],
        response_media_type="text/javascript",
    ),
    Endpoint(
        "/.well-known/gpc.json",
        "GET",
        handlers.gpc_support,
        PUBLIC,
        "Global Privacy Control support resource",
        "banner",
    ),
    Endpoint(
        "/demo/banner",
        "GET",
        handlers.demo_page,
        PUBLIC,
        "Demo page embedding the banner (not in production)",
        "banner",
        response_media_type="text/html",
        development_only=True,
    ),
    Endpoint(
        "/demo/banner/{asset}",
        "GET",
        handlers.demo_asset,
        PUBLIC,
        "Demo page resources",
        "banner",
        params=[Param("asset", "path", "file name")],
        development_only=True,
    ),
]
