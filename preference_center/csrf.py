"""CSRF protection for every state-changing request of the preference center.

- Pages opened with a link token: the CSRF token is an HMAC of the link token's `jti` under the server secret. It is
  put in a hidden field of every form (htmx posts the form, so it travels with each toggle) and checked on every
  POST. A page on another site can neither read it nor compute it.
- The "send me a link" form has no link token: a double-submit cookie (random value, HttpOnly, SameSite=Strict)
  whose HMAC must come back in the hidden field.
- RFC 8058 one-click unsubscribe (`POST /unsubscribe/{token}`) has no CSRF field by design: mail providers post it
  without cookies or a page, and the capability is the token in the URL itself, which no other site knows.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

FORM_COOKIE = "pc_csrf"


def _mac(secret: str, label: str, value: str) -> str:
    digest = hmac.new(secret.encode(), f"{label}\x00{value}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def link_csrf(secret: str, jti: str) -> str:
    """The CSRF token of the page opened with the link token whose `jti` is given."""
    return _mac(secret, "pc-csrf-link", jti)


def new_form_secret() -> str:
    return secrets.token_urlsafe(24)


def form_csrf(secret: str, cookie_value: str) -> str:
    """The hidden-field value matching the double-submit cookie."""
    return _mac(secret, "pc-csrf-form", cookie_value)


def same(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode())
