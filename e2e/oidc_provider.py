"""A small, real OpenID Connect provider on loopback, for tests: discovery, JWKS, an authorization endpoint that
signs in a configured user at once (no login form), and a token endpoint that checks the client secret, the
redirect URI and PKCE (S256) and issues an RS256 (or ES256) ID token with the user's role claim.

    with OidcProvider(user={"sub": "u1", "email": "ada@corp.example", "name": "Ada", "roles": ["agent"]}) as idp:
        idp.issuer, idp.client_id, idp.client_secret   # give these to the server under test

Knobs for negative tests: `tamper` ("nonce", "aud", "iss", "exp", "signature") spoils the next ID tokens that
way; `user` can be replaced between sign-ins; `requests` records every request path.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey


@dataclass
class _Grant:
    client_id: str
    redirect_uri: str
    nonce: str | None
    challenge: str | None
    user: dict[str, Any]
    issued: float = field(default_factory=time.monotonic)


class OidcProvider:
    def __init__(
        self,
        user: dict[str, Any] | None = None,
        *,
        client_id: str = "service-desk",
        client_secret: str = "desk-secret-" + "s" * 20,
        algorithm: str = "RS256",
    ) -> None:
        self.user: dict[str, Any] = user or {"sub": "user-1", "email": "agent@corp.example", "roles": ["agent"]}
        self.client_id = client_id
        self.client_secret = client_secret
        self.algorithm = algorithm
        self.key: Any = (
            RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})
            if algorithm == "RS256"
            else (ECKey.generate_key("P-256", parameters={"kid": "ec-1"}))
        )
        self.tamper: str | None = None
        self.requests: list[str] = []
        self._codes: dict[str, _Grant] = {}
        self._lock = threading.Lock()
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.issuer = ""

    # --- lifecycle ------------------------------------------------------------------------------------------------

    def start(self) -> OidcProvider:
        provider = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return None

            def do_GET(self) -> None:
                provider._handle(self, "GET")

            def do_POST(self) -> None:
                provider._handle(self, "POST")

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.issuer = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> OidcProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- documents ------------------------------------------------------------------------------------------------

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [self.algorithm],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "scopes_supported": ["openid", "email", "profile"],
        }

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.key.as_dict(private=False, use="sig", alg=self.algorithm)]}

    def id_token(self, grant: _Grant) -> str:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": grant.user["sub"],
            "aud": grant.client_id,
            "iat": now,
            "exp": now + 300,
            "auth_time": now,
            **{k: v for k, v in grant.user.items() if k != "sub"},
        }
        if grant.nonce is not None:
            claims["nonce"] = grant.nonce
        key = self.key
        if self.tamper == "nonce":
            claims["nonce"] = "not-the-nonce"
        elif self.tamper == "aud":
            claims["aud"] = "another-client"
        elif self.tamper == "iss":
            claims["iss"] = "http://127.0.0.1:1"
        elif self.tamper == "exp":
            claims["exp"], claims["iat"] = now - 3600, now - 7200
        elif self.tamper == "signature":
            key = (
                RSAKey.generate_key(2048, parameters={"kid": self.key.kid})
                if self.algorithm == "RS256"
                else (ECKey.generate_key("P-256", parameters={"kid": self.key.kid}))
            )
        header = {"alg": self.algorithm, "kid": self.key.kid, "typ": "JWT"}
        return jwt.encode(header, claims, key, algorithms=[self.algorithm])

    # --- HTTP -----------------------------------------------------------------------------------------------------

    def _handle(self, handler: http.server.BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(handler.path)
        self.requests.append(f"{method} {parts.path}")
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if method == "GET" and parts.path == "/.well-known/openid-configuration":
            return self._json(handler, 200, self.discovery())
        if method == "GET" and parts.path == "/jwks":
            return self._json(handler, 200, self.jwks())
        if method == "GET" and parts.path == "/authorize":
            return self._authorize(handler, query)
        if method == "POST" and parts.path == "/token":
            length = int(handler.headers.get("content-length") or 0)
            form = {k: v[0] for k, v in parse_qs(handler.rfile.read(length).decode()).items()}
            return self._token(handler, form)
        return self._json(handler, 404, {"error": "not_found"})

    def _authorize(self, handler: http.server.BaseHTTPRequestHandler, query: dict[str, str]) -> None:
        if query.get("client_id") != self.client_id or query.get("response_type") != "code":
            return self._json(handler, 400, {"error": "invalid_request"})
        redirect_uri = query.get("redirect_uri", "")
        if not redirect_uri.startswith("http://127.0.0.1:") and not redirect_uri.startswith("http://testserver"):
            return self._json(handler, 400, {"error": "invalid_redirect_uri"})
        if "openid" not in query.get("scope", "").split():
            return self._json(handler, 400, {"error": "invalid_scope"})
        challenge = query.get("code_challenge")
        if challenge is not None and query.get("code_challenge_method") != "S256":
            return self._json(handler, 400, {"error": "invalid_request", "error_description": "S256 only"})
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._codes[code] = _Grant(self.client_id, redirect_uri, query.get("nonce"), challenge, dict(self.user))
        params = {"code": code}
        if "state" in query:
            params["state"] = query["state"]
        handler.send_response(302)
        handler.send_header("Location", f"{redirect_uri}?{urlencode(params)}")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    def _token(self, handler: http.server.BaseHTTPRequestHandler, form: dict[str, str]) -> None:
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        header = handler.headers.get("authorization", "")
        if header.lower().startswith("basic "):
            decoded = base64.b64decode(header[6:]).decode()
            client_id, _, client_secret = decoded.partition(":")
            client_id, client_secret = unquote(client_id), unquote(client_secret)
        if client_id != self.client_id or client_secret != self.client_secret:
            return self._json(handler, 401, {"error": "invalid_client"})
        with self._lock:
            grant = self._codes.pop(form.get("code", ""), None)
        if form.get("grant_type") != "authorization_code" or grant is None or time.monotonic() - grant.issued > 60:
            return self._json(handler, 400, {"error": "invalid_grant"})
        if form.get("redirect_uri") != grant.redirect_uri:
            return self._json(handler, 400, {"error": "invalid_grant", "error_description": "redirect_uri"})
        if grant.challenge is not None:
            verifier = form.get("code_verifier", "")
            digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if digest != grant.challenge:
                return self._json(handler, 400, {"error": "invalid_grant", "error_description": "PKCE"})
        return self._json(
            handler,
            200,
            {
                "access_token": secrets.token_urlsafe(24),
                "token_type": "Bearer",
                "expires_in": 300,
                "scope": "openid email profile",
                "id_token": self.id_token(grant),
            },
        )

    @staticmethod
    def _json(handler: http.server.BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Cache-Control", "no-store")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)


if __name__ == "__main__":  # a provider to sign in to a local `scripts/dev` by hand
    import sys

    role = sys.argv[1] if len(sys.argv) > 1 else "agent"
    with OidcProvider(
        {"sub": f"dev-{role}", "email": f"{role}@corp.example", "name": role.title(), "roles": [role]}
    ) as idp:
        print(f"OIDC_ISSUER={idp.issuer} OIDC_CLIENT_ID={idp.client_id} OIDC_CLIENT_SECRET={idp.client_secret}")
        threading.Event().wait()
