"""Sign-in with the company's OpenID Connect provider: authorization code flow with PKCE (RFC 7636) and a nonce.

Authlib's `AsyncOAuth2Client` builds the authorization URL and redeems the code; state, nonce and the PKCE
verifier travel in a signed cookie (`desk_oidc`), not in a server session. The ID token is verified with joserfc
against the provider's JWKS (signature RS256/ES256, `iss`, `aud`, `azp`, `exp`, `iat`, `nonce`), and the role
claim (`OIDC_ROLE_CLAIM`, a dotted path such as `realm_access.roles` works too) must name exactly one desk role.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from server.errors import ConsentError
from server.staff.roles import ROLES

ALGORITHMS = ["RS256", "ES256"]
SCOPE = "openid email profile"
METADATA_TTL_S = 300
LEEWAY_S = 60


class OidcError(ConsentError):
    """The provider could not be reached, answered something unexpected, or the ID token did not verify."""

    status = 401
    slug = "oidc-sign-in-failed"
    title = "Sign-in with the identity provider failed"


@dataclass(frozen=True)
class Identity:
    issuer: str
    subject: str
    email: str | None
    name: str | None
    role: str


def role_from_claims(claims: dict[str, Any], claim: str) -> str:
    """The one desk role named by the claim; several, or none, refuse the sign-in (least privilege)."""
    value: Any = claims
    for part in claim.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    values = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    found = sorted({v for v in values if isinstance(v, str) and v in ROLES})
    if len(found) != 1:
        detail = "no service desk role" if not found else f"several service desk roles ({', '.join(found)})"
        raise OidcError(f"the identity provider gives this user {detail}; ask for exactly one")
    return found[0]


class OidcClient:
    def __init__(
        self,
        issuer: str,
        client_id: str,
        client_secret: str | None,
        role_claim: str,
        redirect_uri: str,
        **http_options: Any,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self.client_secret = client_secret
        self.role_claim = role_claim
        self.redirect_uri = redirect_uri
        self.http_options = {"timeout": 10, **http_options}
        self._metadata: dict[str, Any] | None = None
        self._metadata_at = 0.0
        self._keys: KeySet | None = None

    def _client(self) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(
            client_id=self.client_id,
            client_secret=self.client_secret,
            token_endpoint_auth_method="client_secret_basic" if self.client_secret else "none",
            scope=SCOPE,
            redirect_uri=self.redirect_uri,
            code_challenge_method="S256",
            **self.http_options,
        )

    async def metadata(self) -> dict[str, Any]:
        if self._metadata is None or time.monotonic() - self._metadata_at > METADATA_TTL_S:
            data = await self._get_json(f"{self.issuer}/.well-known/openid-configuration")
            if data.get("issuer", "").rstrip("/") != self.issuer:
                raise OidcError("the provider's discovery document names another issuer")
            for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                if not isinstance(data.get(key), str):
                    raise OidcError(f"the provider's discovery document lacks {key}")
            self._metadata, self._metadata_at = data, time.monotonic()
        return self._metadata

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            async with self._client() as client:
                response = await client.request("GET", url, withhold_token=True)
        except Exception as exc:  # network errors of the HTTP client
            raise OidcError(f"the identity provider is unreachable ({type(exc).__name__})") from None
        if response.status_code != 200:
            raise OidcError(f"the identity provider answered {response.status_code} for {url}")
        try:
            data = response.json()
        except ValueError:
            raise OidcError(f"the identity provider sent invalid JSON for {url}") from None
        if not isinstance(data, dict):
            raise OidcError(f"the identity provider sent unexpected JSON for {url}")
        return data

    async def _key_set(self, refresh: bool = False) -> KeySet:
        if self._keys is None or refresh:
            metadata = await self.metadata()
            try:
                self._keys = KeySet.import_key_set(await self._get_json(metadata["jwks_uri"]))  # type: ignore[arg-type]
            except (JoseError, ValueError, KeyError, TypeError) as exc:
                raise OidcError(f"the provider's JWKS is not usable ({type(exc).__name__})") from None
        return self._keys

    async def start(self) -> tuple[str, str, str, str]:
        """(authorization URL, state, nonce, PKCE verifier) of a new sign-in."""
        metadata = await self.metadata()
        verifier, nonce = generate_token(64), generate_token(32)
        async with self._client() as client:
            url, state = client.create_authorization_url(
                metadata["authorization_endpoint"], code_verifier=verifier, nonce=nonce
            )
        return url, state, nonce, verifier

    async def finish(self, code: str, verifier: str, nonce: str) -> Identity:
        """Redeem the code, verify the ID token and read the identity and role from it."""
        metadata = await self.metadata()
        try:
            async with self._client() as client:
                token = await client.fetch_token(
                    metadata["token_endpoint"], grant_type="authorization_code", code=code, code_verifier=verifier
                )
        except Exception as exc:  # OAuthError, network errors
            raise OidcError(f"the code could not be redeemed ({type(exc).__name__}: {exc})") from None
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise OidcError("the token response carries no ID token")
        claims = await self.verify_id_token(id_token, nonce)
        return Identity(
            issuer=self.issuer,
            subject=str(claims["sub"]),
            email=claims.get("email") if isinstance(claims.get("email"), str) else None,
            name=claims.get("name") if isinstance(claims.get("name"), str) else None,
            role=role_from_claims(claims, self.role_claim),
        )

    async def verify_id_token(self, id_token: str, nonce: str) -> dict[str, Any]:
        keys = await self._key_set()
        try:
            try:
                decoded = jwt.decode(id_token, keys, algorithms=ALGORITHMS)
            except (JoseError, ValueError):  # perhaps a rotated key: fetch the JWKS again, once
                decoded = jwt.decode(id_token, await self._key_set(refresh=True), algorithms=ALGORITHMS)
            registry = jwt.JWTClaimsRegistry(
                leeway=LEEWAY_S,
                iss={"essential": True, "value": self.issuer},
                aud={"essential": True, "value": self.client_id},
                sub={"essential": True},
                exp={"essential": True},
                iat={"essential": True},
                nonce={"essential": True, "value": nonce},
            )
            registry.validate(decoded.claims)
        except (JoseError, ValueError, TypeError) as exc:
            raise OidcError(f"the ID token does not verify ({type(exc).__name__}: {exc})") from None
        claims = dict(decoded.claims)
        audience = claims.get("aud")
        if isinstance(audience, list) and len(audience) > 1 and claims.get("azp") != self.client_id:
            raise OidcError("the ID token has several audiences and another authorized party (OIDC Core 3.1.3.7)")
        return claims
