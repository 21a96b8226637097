"""Staff sessions and CSRF, in signed cookies (itsdangerous, keyed by SECRET_KEY): no server-side session store,
so any number of app processes serve the console.

- `desk_session` (salt "staff-session"): staff id, role, CSRF token, issue time and the account's session epoch.
  HttpOnly, SameSite=Lax (Strict would drop the cookie on the redirect back from the identity provider), Secure
  when PUBLIC_URL is https or the request came over https (`SessionCodec.over`), path /console, max age
  SESSION_LIFETIME_SECONDS. The account row is read on every request: a disabled account, a changed role or a
  sign-out (the epoch moves on) ends the session at once.
- `desk_oidc` (salt "staff-oidc"): state, nonce and PKCE verifier of one sign-in through the provider, 10 minutes.
- `desk_login` (salt "staff-login"): the CSRF token of the sign-in form, before there is a session.
"""

from __future__ import annotations

import copy
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.responses import Response

SESSION_COOKIE = "desk_session"
FLOW_COOKIE = "desk_oidc"
LOGIN_COOKIE = "desk_login"
FLOW_MAX_AGE_S = 600
LOGIN_MAX_AGE_S = 3600


@dataclass(frozen=True)
class StaffSession:
    staff_id: int
    role: str
    csrf: str
    issued_at: int
    epoch: int


class SessionCodec:
    def __init__(self, secret: str, lifetime_s: int, *, secure: bool) -> None:
        self.lifetime_s = lifetime_s
        self.secure = secure
        self._session = URLSafeTimedSerializer(secret, salt="staff-session")
        self._flow = URLSafeTimedSerializer(secret, salt="staff-oidc")
        self._login = URLSafeTimedSerializer(secret, salt="staff-login")

    def over(self, https: bool) -> SessionCodec:
        """This codec for a response to a request served over https (`https`): its cookies are Secure then too."""
        if not https or self.secure:
            return self
        codec = copy.copy(self)
        codec.secure = True
        return codec

    # --- the session -------------------------------------------------------------------------------------------

    def issue(self, staff_id: int, role: str, epoch: int) -> str:
        data = {"sid": staff_id, "role": role, "csrf": secrets.token_urlsafe(24), "iat": int(time.time()), "ep": epoch}
        return str(self._session.dumps(data))

    def read(self, cookie: str | None) -> StaffSession | None:
        data = _loads(self._session, cookie, self.lifetime_s)
        if data is None:
            return None
        try:
            return StaffSession(
                int(data["sid"]), str(data["role"]), str(data["csrf"]), int(data["iat"]), int(data["ep"])
            )
        except (KeyError, TypeError, ValueError):
            return None

    def set_session(self, response: Response, value: str) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            value,
            max_age=self.lifetime_s,
            path="/console",
            httponly=True,
            samesite="lax",
            secure=self.secure,
        )

    def clear_session(self, response: Response) -> None:
        response.delete_cookie(SESSION_COOKIE, path="/console", httponly=True, samesite="lax", secure=self.secure)

    # --- one sign-in through the identity provider --------------------------------------------------------------

    def issue_flow(self, state: str, nonce: str, verifier: str, next_path: str) -> str:
        return str(self._flow.dumps({"state": state, "nonce": nonce, "verifier": verifier, "next": next_path}))

    def read_flow(self, cookie: str | None) -> dict[str, str] | None:
        data = _loads(self._flow, cookie, FLOW_MAX_AGE_S)
        if data is None or not all(isinstance(data.get(k), str) for k in ("state", "nonce", "verifier", "next")):
            return None
        return {k: str(data[k]) for k in ("state", "nonce", "verifier", "next")}

    def set_flow(self, response: Response, value: str) -> None:
        response.set_cookie(
            FLOW_COOKIE,
            value,
            max_age=FLOW_MAX_AGE_S,
            path="/console/auth",
            httponly=True,
            samesite="lax",
            secure=self.secure,
        )

    def clear_flow(self, response: Response) -> None:
        response.delete_cookie(FLOW_COOKIE, path="/console/auth", httponly=True, samesite="lax", secure=self.secure)

    # --- the sign-in form's CSRF token ----------------------------------------------------------------------------

    def login_token(self, cookie: str | None) -> tuple[str, str]:
        """(CSRF token for the form, cookie value): the existing pair when the cookie is valid, else a new one."""
        data = _loads(self._login, cookie, LOGIN_MAX_AGE_S)
        if isinstance(data, dict) and isinstance(data.get("csrf"), str) and cookie:
            return str(data["csrf"]), cookie
        token = secrets.token_urlsafe(24)
        return token, str(self._login.dumps({"csrf": token}))

    def login_csrf_ok(self, cookie: str | None, given: str | None) -> bool:
        data = _loads(self._login, cookie, LOGIN_MAX_AGE_S)
        return isinstance(data, dict) and isinstance(data.get("csrf"), str) and same(data["csrf"], given)

    def set_login(self, response: Response, value: str) -> None:
        response.set_cookie(
            LOGIN_COOKIE,
            value,
            max_age=LOGIN_MAX_AGE_S,
            path="/console",
            httponly=True,
            samesite="strict",
            secure=self.secure,
        )


def _loads(serializer: URLSafeTimedSerializer, value: str | None, max_age: int) -> dict[str, Any] | None:
    if not value or len(value) > 4096:
        return None
    try:
        data = serializer.loads(value, max_age=max_age)
    except BadSignature:  # SignatureExpired is a BadSignature
        return None
    return data if isinstance(data, dict) else None


def same(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), str(given).encode())
