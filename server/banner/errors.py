"""The banner's domain errors, in the `server.errors` hierarchy (mapped to problem+json by `server.kernel.problems`).

ConsentError
├── OriginNotAllowed          the Origin is not one of the site's origins (403)
├── TooManyRequests           over COOKIE_RATE_PER_MINUTE for the caller's network (429 + Retry-After)
├── InvalidRequest
│   ├── OriginRequired        a public banner call without an Origin header (400)
│   └── UnknownSite           no site with this id in policy_docs/sites.yaml (404 on the config, 422 in a body)
└── UnprocessableDecision
    └── BannerTextMismatch    the text hash the browser sent is not the text served for site/lang/version (422)
"""

from __future__ import annotations

from typing import Any

from server.errors import ConsentError, InvalidRequest, UnprocessableDecision


class OriginNotAllowed(ConsentError):
    """The request comes from an origin the site does not list; nothing is read or written."""

    status = 403
    slug = "origin-not-allowed"
    title = "This origin may not use the banner of this site"


class OriginRequired(InvalidRequest):
    """Browsers send `Origin` with every POST and CORS request; a call without one is not from a banner."""

    status = 400
    slug = "origin-required"
    title = "An Origin header is required"


class TooManyRequests(ConsentError):
    """More banner records than COOKIE_RATE_PER_MINUTE from one network (/24 or /48) in the current minute."""

    status = 429
    slug = "too-many-requests"
    title = "Too many requests"

    def __init__(self, detail: str, *, retry_after: int, **extensions: Any) -> None:
        super().__init__(detail, retry_after=retry_after, **extensions)
        self.retry_after = retry_after


class UnknownSite(InvalidRequest):
    """No site with this id is declared in `policy_docs/sites.yaml`."""

    slug = "unknown-site"
    title = "Unknown site"

    def __init__(self, detail: str, *, status: int = 422, **extensions: Any) -> None:
        super().__init__(detail, **extensions)
        self.status = status


class BannerTextMismatch(UnprocessableDecision):
    """The SHA-256 of the banner text the browser showed differs from the text served for that site, language and
    cookie-policy version: the record would not prove what was shown, so it is refused."""

    slug = "banner-text-mismatch"
    title = "The banner text shown is not the text served"


BANNER_ERRORS: tuple[type[ConsentError], ...] = (
    OriginNotAllowed,
    OriginRequired,
    TooManyRequests,
    UnknownSite,
    BannerTextMismatch,
)
