"""Link tokens: signed, expiring, single-purpose links that open the preference center without a password.

A link token is a compact JWS (ES256, signed with the server's active key, `kid` in the header) whose claims are
`iss` (the installation: the transparency log's stored id, see `LinkTokens.adopt`), `aud` = "preference-center",
`sub` (the subject ref), `iat`, `exp`, `jti` and `use`:

- `preferences`: opens `GET /preferences` (and the forms on it);
- `confirm`: confirms one pending double opt-in (`purpose`, `channel`, the pending grant's event id `evt`, the
  confirmation mail's Message-ID `mid`, and the SHA-256 `snap` of that mail's stored text);
- `unsubscribe`: withdraws one `purpose` x `channel` (RFC 8058 one-click unsubscribe).

Single-purpose: a token is accepted only by the endpoint of its `use` (a confirmation link cannot open the page,
an unsubscribe link cannot confirm). Tokens are stateless (no table): a replayed confirmation link is harmless
because `confirm` is only allowed from `pending_confirmation`. WCAG 2.2 3.3.8: no password, no cognitive test.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError

from server.auth.keys import ALGORITHM, KeyStore
from server.errors import ConsentError

AUDIENCE = "preference-center"
USES = ("preferences", "confirm", "unsubscribe")
MAX_TOKEN_CHARS = 4096
# Unsubscribe links sit in inboxes for months; a link that stops working would make withdrawal harder than the
# grant was (GDPR 7(3)). They can only ever withdraw, so they live at least a year.
UNSUBSCRIBE_LIFETIME_S = 365 * 24 * 3600


class LinkTokenRefused(ConsentError):
    """A link token that is missing, malformed, tampered with, expired, for another audience or another use.

    `reason` is one of: missing, malformed, signature, audience, issuer, expired, use. The preference center shows
    a friendly page offering a new link; nothing is written.
    """

    status = 403
    slug = "link-token-refused"
    title = "The link is not valid"

    def __init__(self, detail: str, *, reason: str) -> None:
        super().__init__(detail, reason=reason)
        self.reason = reason


@dataclass(frozen=True)
class LinkClaims:
    ref: str
    use: str
    jti: str
    issued_at: int
    expires_at: int
    purpose: str | None = None
    channel: str | None = None
    lang: str | None = None
    event: str | None = None
    message_id: str | None = None
    mail_snapshot: str | None = None


class LinkTokens:
    """Issues and verifies link tokens with the server's ES256 key store (old keys keep verifying).

    The issuer is PUBLIC_URL until the server's start calls `adopt` with the installation's stored identity; from
    then on links are signed for that identity, which a later PUBLIC_URL change does not move, so a link mailed
    before the change still opens (an unsubscribe link lives a year: GDPR 7(3), 21(3), RFC 8058). The current
    PUBLIC_URL stays accepted too: links mailed by a release that signed for it keep working."""

    def __init__(self, keys: KeyStore, issuer: str, lifetime_s: int, now: Callable[[], float] = time.time) -> None:
        self.keys = keys
        self.issuer = issuer
        self.accepted = frozenset({issuer})
        self.lifetime_s = lifetime_s
        self.now = now

    def adopt(self, identity: str) -> None:
        """Sign for `identity` (the transparency log's stored id, `TransparencyLog.identity`) and accept it."""
        self.issuer = identity
        self.accepted = self.accepted | {identity}

    def issue(
        self,
        ref: str,
        use: str,
        *,
        purpose: str | None = None,
        channel: str | None = None,
        lang: str | None = None,
        event: str | None = None,
        message_id: str | None = None,
        mail_snapshot: str | None = None,
        lifetime_s: int | None = None,
    ) -> tuple[str, int]:
        """A new token and its expiry (epoch seconds)."""
        if use not in USES:
            raise ValueError(f"unknown link use {use!r}")
        if lifetime_s is None:
            lifetime_s = max(self.lifetime_s, UNSUBSCRIBE_LIFETIME_S) if use == "unsubscribe" else self.lifetime_s
        issued = int(self.now())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": ref,
            "iat": issued,
            "exp": issued + lifetime_s,
            "jti": secrets.token_urlsafe(16),
            "use": use,
        }
        optional = {
            "purpose": purpose,
            "channel": channel,
            "lang": lang,
            "evt": event,
            "mid": message_id,
            "snap": mail_snapshot,
        }
        claims.update({k: v for k, v in optional.items() if v is not None})
        key = self.keys.active
        header = {"alg": ALGORITHM, "kid": key.kid, "typ": "JWT"}
        return jwt.encode(header, claims, key, algorithms=[ALGORITHM]), issued + lifetime_s

    def verify(self, token: str | None, use: str) -> LinkClaims:
        """The claims of a valid token for `use`, or `LinkTokenRefused` naming the reason."""
        if not token:
            raise LinkTokenRefused("no link token", reason="missing")
        if token.count(".") != 2 or len(token) > MAX_TOKEN_CHARS:
            raise LinkTokenRefused("the link token is not a compact JWS", reason="malformed")
        try:
            decoded = jwt.decode(token, self.keys.key_set, algorithms=[ALGORITHM])
        except (JoseError, ValueError, KeyError, TypeError) as exc:
            raise LinkTokenRefused(
                f"the link token does not verify ({type(exc).__name__})", reason="signature"
            ) from None
        claims = decoded.claims
        if claims.get("aud") != AUDIENCE:
            raise LinkTokenRefused("the token is not a preference-center link", reason="audience")
        if claims.get("iss") not in self.accepted:
            raise LinkTokenRefused("the token was issued by another server", reason="issuer")
        exp = claims.get("exp")
        if not isinstance(exp, int) or exp <= self.now():
            raise LinkTokenRefused("the link has expired", reason="expired")
        if claims.get("use") != use:
            raise LinkTokenRefused(f"this link is not for {use}", reason="use")
        ref, jti, iat = claims.get("sub"), claims.get("jti"), claims.get("iat")
        if not isinstance(ref, str) or not ref or not isinstance(jti, str) or not isinstance(iat, int):
            raise LinkTokenRefused("the link token lacks required claims", reason="malformed")
        return LinkClaims(
            ref=ref,
            use=use,
            jti=jti,
            issued_at=iat,
            expires_at=exp,
            purpose=_str(claims.get("purpose")),
            channel=_str(claims.get("channel")),
            lang=_str(claims.get("lang")),
            event=_str(claims.get("evt")),
            message_id=_str(claims.get("mid")),
            mail_snapshot=_str(claims.get("snap")),
        )


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None
