"""JWT access tokens (RFC 9068 profile, ES256) and their verification with a bounded cache.

A verified token is cached until it expires, keyed by the token string itself, so the consent-check hot path
pays a dictionary lookup instead of an ECDSA verification (~60 us) per request. The cache is per process and
holds only tokens this process verified. Every use, cached or not, is also checked against the process's view of
the clients (`server.auth.revocation.ClientView`, two more dictionary lookups): a revoked client, a token issued
under an older token generation, or one carrying a scope taken away, is refused within the view's refresh
interval, not at the token's expiry.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwt import JWTClaimsRegistry

from server.auth.keys import ALGORITHM, KeyStore
from server.auth.revocation import ClientView
from server.errors import AuthenticationRequired


@dataclass(frozen=True)
class AccessToken:
    client_id: str
    scopes: frozenset[str]
    expires_at: int
    jti: str
    issued_at: int = 0
    generation: int = 0  # the client's token generation when it was issued (claim `client_gen`)


class TokenService:
    def __init__(
        self,
        keys: KeyStore,
        issuer: str,
        audience: str,
        lifetime_s: int,
        cache_size: int,
        now: Callable[[], float] = time.time,
        clients: ClientView | None = None,
    ) -> None:
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.lifetime_s = lifetime_s
        self.cache_size = cache_size
        self.now = now
        self.clients = clients if clients is not None else ClientView()
        self._cache: OrderedDict[str, AccessToken] = OrderedDict()

    def issue(self, client_id: str, scopes: list[str], generation: int = 0) -> tuple[str, int]:
        issued = int(self.now())
        claims = {
            "iss": self.issuer,
            "sub": client_id,
            "aud": self.audience,
            "client_id": client_id,
            "scope": " ".join(scopes),
            "iat": issued,
            "exp": issued + self.lifetime_s,
            "jti": secrets.token_urlsafe(16),
            "client_gen": generation,
        }
        key = self.keys.active
        header = {"alg": ALGORITHM, "kid": key.kid, "typ": "at+jwt"}
        return jwt.encode(header, claims, key, algorithms=[ALGORITHM]), self.lifetime_s

    def verify(self, token: str) -> AccessToken:
        cached = self._cache.get(token)
        if cached is not None:
            if cached.expires_at > self.now():
                self._cache.move_to_end(token)
                self.clients.check(cached.client_id, cached.generation, cached.scopes, cached.issued_at)
                return cached
            del self._cache[token]
            raise AuthenticationRequired("the access token has expired")
        verified = self._verify_signature_and_claims(token)
        self.clients.check(verified.client_id, verified.generation, verified.scopes, verified.issued_at)
        if self.cache_size:
            self._cache[token] = verified
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return verified

    def _verify_signature_and_claims(self, token: str) -> AccessToken:
        if token.count(".") != 2 or len(token) > 4096:
            raise AuthenticationRequired("the access token is not a compact JWS")
        try:
            decoded = jwt.decode(token, self.keys.key_set, algorithms=[ALGORITHM])
        except (JoseError, ValueError, KeyError, TypeError) as exc:
            raise AuthenticationRequired(f"the access token is not valid ({type(exc).__name__})") from None
        if decoded.header.get("typ", "").lower() not in {"at+jwt", "application/at+jwt"}:
            raise AuthenticationRequired("the token is not an access token (typ must be at+jwt)")
        registry = JWTClaimsRegistry(
            now=lambda: int(self.now()),
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": self.audience},
            exp={"essential": True},
            client_id={"essential": True},
            jti={"essential": True},
        )
        try:
            registry.validate(decoded.claims)
        except JoseError as exc:
            description = getattr(exc, "description", None) or type(exc).__name__
            raise AuthenticationRequired(f"the access token was refused: {description}") from None
        claims = decoded.claims
        return AccessToken(
            client_id=str(claims["client_id"]),
            scopes=frozenset(str(claims.get("scope", "")).split()),
            expires_at=int(claims["exp"]),
            jti=str(claims["jti"]),
            issued_at=_integer(claims.get("iat")),
            generation=_integer(claims.get("client_gen")),
        )


def _integer(value: object) -> int:
    """A numeric claim as an int; absent or not a number: 0 (a token issued before the claim existed)."""
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0
