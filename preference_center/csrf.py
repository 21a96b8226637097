"""CSRF protection for every state-changing request of the preference center.

- Pages opened with a link token: the CSRF token is an HMAC of the link token's `jti` under the server secret. It is
  put in a hidden field of every form (htmx posts the form, so it travels with each toggle) and checked on every
  POST. A page on another site can neither read it nor compute it.
- The "send me a link" form has no link token. Its hidden field carries a signed form token: the time it was issued,
  a random nonce, and an HMAC of both and of the client's network (/24 or /48) under the server secret. It is
  accepted for an hour, from the network it was given to, and only from a same-origin form post (`Sec-Fetch-Site`,
  where the browser sends it). No cookie: the form also appears on the "link not valid" page inside the embed
  iframe, where a browser never sends a SameSite cookie of ours once the embedding site is another site. Another
  site can neither read the token (its page cannot read ours) nor reuse one it fetched itself (from its own network),
  and browsers mark its cross-site posts as such.
- RFC 8058 one-click unsubscribe (`POST /unsubscribe/{token}`) has no CSRF field by design: mail providers post it
  without cookies or a page, and the capability is the token in the URL itself, which no other site knows.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

FORM_TOKEN_LIFETIME_S = 3600
_CLOCK_SKEW_S = 60
# Sec-Fetch-Site of a post that may carry a form token: our own form (any other value is another site's page).
SAME_ORIGIN_FETCH = frozenset({"same-origin"})


def _mac(secret: str, label: str, value: str) -> str:
    digest = hmac.new(secret.encode(), f"{label}\x00{value}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def link_csrf(secret: str, jti: str) -> str:
    """The CSRF token of the page opened with the link token whose `jti` is given."""
    return _mac(secret, "pc-csrf-link", jti)


def form_token(secret: str, network: str, now: float) -> str:
    """The hidden-field value of a form without a link token, for a client on `network`."""
    issued, nonce = str(int(now)), secrets.token_urlsafe(12)
    return f"{issued}.{nonce}.{_mac(secret, 'pc-csrf-form', f'{issued}.{nonce}.{network}')}"


def form_token_valid(secret: str, given: str | None, network: str, now: float) -> bool:
    """`given` is a form token issued by `form_token` to this network less than an hour ago."""
    issued, _, rest = (given or "").partition(".")
    nonce, _, mac = rest.partition(".")
    if not (issued.isascii() and issued.isdigit() and len(issued) <= 12 and nonce and mac):  # "²" is a digit
        return False
    if not -_CLOCK_SKEW_S <= now - int(issued) <= FORM_TOKEN_LIFETIME_S:
        return False
    return same(_mac(secret, "pc-csrf-form", f"{issued}.{nonce}.{network}"), mac)


def cross_site_post(sec_fetch_site: str | None) -> bool:
    """The browser says the post comes from a page of another origin (absent in old browsers: the token decides)."""
    return sec_fetch_site is not None and sec_fetch_site not in SAME_ORIGIN_FETCH


def same(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode())
