"""The banner's domain errors, in the `server.errors` hierarchy (mapped to problem+json by `server.kernel.problems`).

ConsentError
├── OriginNotAllowed          the Origin is not one of the site's origins (403)
├── TooManyRequests           over BANNER_RATE_PER_CONSENT or BANNER_RATE_PER_NETWORK (429 + Retry-After)
├── ChoiceIdReused            a choice id already recorded with other content (409)
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
    """More banner records in the last minute than BANNER_RATE_PER_CONSENT for the consent id, or than
    BANNER_RATE_PER_NETWORK from its network (/24 or /48); the banner sends the choice again after Retry-After."""

    status = 429
    slug = "too-many-requests"
    title = "Too many requests"

    def __init__(self, detail: str, *, retry_after: int, **extensions: Any) -> None:
        super().__init__(detail, retry_after=retry_after, **extensions)
        self.retry_after = retry_after


class ChoiceIdReused(ConsentError):
    """The banner sends a choice again with the same choice id until it is recorded; the same id with another
    content is not that choice, and recording it would answer with another choice's receipt."""

    status = 409
    slug = "choice-id-reused"
    title = "This choice id was recorded with other content"


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
    ChoiceIdReused,
    UnknownSite,
    BannerTextMismatch,
)
