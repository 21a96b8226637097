"""Access tokens: who gets one (RFC 6749 4.4), what it looks like (RFC 9068), and every way a forged one is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from joserfc import jwt
from joserfc.jwk import ECKey
from starlette.testclient import TestClient

from server.auth.clients import NewClient, create_client
from server.cli import main as cli_main
from server.db import connection
from server.models import ConsentEvent, ConsentState, Subject
from server.services import Services
from server.settings import Settings
from tests.helpers.api import ALL_SCOPES, bearer, record
from tests.helpers.app import run

ISSUER = "http://testserver"  # the `public_url` of the test settings
AUDIENCE = f"{ISSUER}/v1"
# Any authenticated call that passes the guard ends here: a 404 for a subject nobody recorded.
PROTECTED = "/v1/subjects/nobody/events"


# --- helpers -------------------------------------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_json(value: Any) -> str:
    return _b64url(json.dumps(value, separators=(",", ":")).encode())


def _unb64url(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def _segments(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes]:
    header, payload, signature = token.split(".")
    return json.loads(_unb64url(header)), json.loads(_unb64url(payload)), _unb64url(signature)


def _services(client: TestClient) -> Services:
    services: Services = client.app.state.services  # type: ignore[attr-defined]
    return services


def _claims(**changes: Any) -> dict[str, Any]:
    """Claims of a valid access token (RFC 9068 2.2); a change to None removes the claim."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "cl_handmade",
        "aud": AUDIENCE,
        "client_id": "cl_handmade",
        "scope": "consent:read",
        "iat": now,
        "exp": now + 900,
        "jti": "handmade-" + str(now),
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _sign(client: TestClient, claims: dict[str, Any], *, typ: str | None = "at+jwt", key: ECKey | None = None) -> str:
    """A token signed with the server's real active key (or `key`), with exactly the header asked for."""
    signing_key = key or _services(client).keys.active
    header: dict[str, Any] = {"alg": "ES256", "kid": _services(client).keys.active.kid}
    if typ is not None:
        header["typ"] = typ
    return jwt.encode(header, claims, signing_key, algorithms=["ES256"], default_type=None)


def _get(client: TestClient, token: str) -> Any:
    return client.get(PROTECTED, headers={"Authorization": f"Bearer {token}"})


def _assert_invalid_token(response: Any, label: str) -> None:
    """RFC 6750 3 and 3.1: 401, a Bearer challenge, error="invalid_token"; the body is problem+json."""
    assert response.status_code == 401, (label, response.status_code, response.text)
    challenge = response.headers.get("www-authenticate", "")
    assert challenge.startswith("Bearer"), (label, challenge)
    assert 'error="invalid_token"' in challenge, (label, challenge)
    assert response.headers["content-type"] == "application/problem+json", label
    assert response.json()["type"] == "/problems/unauthorized", label


async def _counts() -> tuple[int, int, int]:
    return await Subject.all().count(), await ConsentEvent.all().count(), await ConsentState.all().count()


async def _api_client_rows() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = await connection().execute_query_dict("SELECT * FROM api_clients")
    return rows


def _basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def _id_secret(new: NewClient) -> tuple[str, str]:
    return new.client_id, new.client_secret


def _new_client(client: TestClient, scopes: str = ALL_SCOPES) -> NewClient:
    new: NewClient = run(client, create_client, "tokens-test", scopes)
    return new


# --- the guard refuses what is not a valid, unexpired, server-signed access token -----------------------------------

MALFORMED_HEADERS = [
    "Bearer",
    "Bearer    ",
    "Basic dXNlcjpwYXNz",
    "Token abc.def.ghi",
    "Bearer not-a-jwt",
    "Bearer a.b",
    "Bearer a.b.c.d",
    "Bearer ..",
    "Bearer !!!.@@@.###",
    "Bearer " + _b64url_json([1]) + "." + _b64url_json({}) + ".",
    "Bearer " + _b64url_json({"alg": "ES256", "crit": 1}) + "." + _b64url_json({}) + ".c2ln",
    "Bearer " + "a" * 3000 + "." + "b" * 3000 + ".c",
]


def test_missing_or_malformed_authorization_is_refused(client: TestClient) -> None:
    """RFC 6750 3: a 401 with a Bearer challenge, whatever is wrong with the Authorization header."""
    response = client.get(PROTECTED)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.headers["content-type"] == "application/problem+json"
    for header in MALFORMED_HEADERS:
        response = client.get(PROTECTED, headers={"Authorization": header})
        assert response.status_code == 401, (header[:60], response.text)
        assert response.headers["www-authenticate"].startswith("Bearer"), header[:60]
        assert response.headers["content-type"] == "application/problem+json", header[:60]


def test_missing_token_challenge_has_no_error_code(client: TestClient) -> None:
    """RFC 6750 3.1: a request that lacks any authentication information (no header, or another scheme) SHOULD NOT
    get an error code in the challenge, only `Bearer realm=...`."""
    for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNz"}):
        response = client.get(PROTECTED, headers=headers)
        assert response.status_code == 401
        challenge = response.headers["www-authenticate"]
        assert challenge.startswith("Bearer"), challenge
        assert "error=" not in challenge, (headers, challenge)


def test_tokens_with_wrong_claims_are_refused(client: TestClient) -> None:
    # The control: the same hand-made construction, done right, passes the guard (then 404: nobody recorded).
    accepted = _get(client, _sign(client, _claims()))
    assert accepted.status_code == 404, accepted.text
    assert accepted.json()["type"] == "/problems/not-found"

    now = int(time.time())
    # RFC 7519 4.1.4: expired
    _assert_invalid_token(_get(client, _sign(client, _claims(iat=now - 4500, exp=now - 3600))), "expired")
    # RFC 9068 4: the audience must be this API, the issuer this server
    for audience in (f"{ISSUER}/other", ISSUER, "https://evil.example/v1", [f"{ISSUER}/other"], None):
        _assert_invalid_token(_get(client, _sign(client, _claims(aud=audience))), f"aud={audience}")
    for issuer in ("https://evil.example", f"{ISSUER}/", "http://testserver.evil", None):
        _assert_invalid_token(_get(client, _sign(client, _claims(iss=issuer))), f"iss={issuer}")
    # RFC 9068 4: typ must be at+jwt (an ID token or any other JWT signed by the same key is not an access token)
    for typ in (None, "JWT", "id_token+jwt"):
        _assert_invalid_token(_get(client, _sign(client, _claims(), typ=typ)), f"typ={typ}")
    # RFC 9068 2.2: exp, client_id and jti are required
    for claim in ("exp", "client_id", "jti"):
        _assert_invalid_token(_get(client, _sign(client, _claims(**{claim: None}))), f"no {claim}")


def test_token_expiring_while_cached_is_refused(client: TestClient) -> None:
    """The verification cache keeps a token only until its `exp` (RFC 7519 4.1.4)."""
    headers = bearer(client, "consent:read")
    assert client.get(PROTECTED, headers=headers).status_code == 404  # verified, now cached
    tokens = _services(client).tokens
    real_now = tokens.now
    tokens.now = lambda: real_now() + 901
    _assert_invalid_token(client.get(PROTECTED, headers=headers), "expired in cache")


def test_unsigned_and_hmac_tokens_are_refused(client: TestClient) -> None:
    """RFC 8725 2.1, 3.1: no `alg: none`, and no key confusion (the public key used as an HMAC secret)."""
    active = _services(client).keys.active
    payload = _b64url_json(_claims(scope=ALL_SCOPES))
    for alg in ("none", "None", "NONE"):
        header = _b64url_json({"alg": alg, "typ": "at+jwt", "kid": active.kid})
        _assert_invalid_token(_get(client, f"{header}.{payload}."), f"alg={alg}")
        _assert_invalid_token(_get(client, f"{header}.{payload}.{_b64url(b'sig')}"), f"alg={alg} with signature")

    public = active.as_dict(private=False)
    jwks = client.get("/.well-known/jwks.json")
    secrets = [
        json.dumps(public).encode(),
        json.dumps(public, separators=(",", ":"), sort_keys=True).encode(),
        json.dumps(jwks.json()["keys"][0]).encode(),
        jwks.content,
        active.as_pem(private=False),
    ]
    for alg, digest in (("HS256", hashlib.sha256), ("HS384", hashlib.sha384), ("HS512", hashlib.sha512)):
        header = _b64url_json({"alg": alg, "typ": "at+jwt", "kid": active.kid})
        signing_input = f"{header}.{payload}"
        for secret in secrets:
            signature = hmac.new(secret, signing_input.encode("ascii"), digest).digest()
            _assert_invalid_token(_get(client, f"{signing_input}.{_b64url(signature)}"), f"{alg} {secret[:20]!r}")


def test_forged_and_tampered_signatures_are_refused(client: TestClient) -> None:
    kid = _services(client).keys.active.kid
    assert kid is not None
    impostor = ECKey.generate_key("P-256", parameters={"kid": kid, "alg": "ES256", "use": "sig"}, private=True)
    _assert_invalid_token(_get(client, _sign(client, _claims(scope=ALL_SCOPES), key=impostor)), "same kid")
    # and a kid the server never published
    claims = _claims(scope=ALL_SCOPES)
    unknown = jwt.encode({"alg": "ES256", "typ": "at+jwt", "kid": "not-ours"}, claims, impostor, algorithms=["ES256"])
    _assert_invalid_token(_get(client, unknown), "unknown kid")

    # a real token with one claim changed and its signature kept
    token = bearer(client, "consent:read")["Authorization"].removeprefix("Bearer ")
    assert _get(client, token).status_code == 404  # the untouched token works
    header, payload, signature = token.split(".")
    issued = json.loads(_unb64url(payload))
    for change in ({"scope": ALL_SCOPES}, {"exp": issued["exp"] + 86400}, {"client_id": "cl_someone_else"}):
        forged = f"{header}.{_b64url_json({**issued, **change})}.{signature}"
        _assert_invalid_token(_get(client, forged), f"tampered {change}")
    # the same claims serialised differently: the signature covers the bytes (RFC 7515 5.2), not their meaning
    reserialised = _b64url(json.dumps(issued, indent=1).encode())
    assert reserialised != payload
    _assert_invalid_token(_get(client, f"{header}.{reserialised}.{signature}"), "reserialised")
    # an escalated scope does not let a write through either, and nothing is written
    forged = f"{header}.{_b64url_json({**issued, 'scope': ALL_SCOPES})}.{signature}"
    before = run(client, _counts)
    response = record(client, {"Authorization": f"Bearer {forged}"}, "cust-t", [("offers", "email", "grant")])
    _assert_invalid_token(response, "tampered write")
    assert run(client, _counts) == before


# --- scopes ---------------------------------------------------------------------------------------------------------


def test_scopes_are_enforced(client: TestClient) -> None:
    """RFC 6750 3.1: insufficient_scope is a 403 whose challenge names the scope needed."""
    before = run(client, _counts)
    response = record(client, bearer(client, "consent:read"), "cust-s", [("offers", "email", "grant")])
    assert response.status_code == 403, response.text
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer")
    assert 'error="insufficient_scope"' in challenge
    assert 'scope="consent:write"' in challenge
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "/problems/insufficient-scope"
    assert run(client, _counts) == before

    write_only = bearer(client, "consent:write")
    assert record(client, write_only, "cust-w", [("offers", "email", "grant")]).status_code == 201
    for path in ("/v1/subjects/cust-w/events", "/v1/subjects/cust-w/consents"):
        response = client.get(path, headers=write_only)
        assert response.status_code == 403, (path, response.text)
        challenge = response.headers["www-authenticate"]
        assert challenge.startswith("Bearer")
        assert 'error="insufficient_scope"' in challenge and 'scope="consent:read"' in challenge


# --- the token endpoint ---------------------------------------------------------------------------------------------


def test_token_endpoint_accepts_basic_and_client_secret_post(client: TestClient) -> None:
    """RFC 6749 2.3.1: client_secret_basic and client_secret_post; 5.1: the answer is not cached."""
    new = _new_client(client, "consent:read consent:write")
    basic = client.post("/oauth/token", data={"grant_type": "client_credentials"}, headers=_basic(*_id_secret(new)))
    post = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": new.client_id, "client_secret": new.client_secret},
    )
    for response in (basic, post):
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        body = response.json()
        assert body["token_type"] == "Bearer"
        assert body["expires_in"] == 900
        assert body["scope"].split() == ["consent:read", "consent:write"]
        assert client.get(PROTECTED, headers={"Authorization": f"Bearer {body['access_token']}"}).status_code == 404
    # a narrower scope may be asked for, and is what the token carries
    narrow = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "consent:read"},
        headers=_basic(*_id_secret(new)),
    )
    assert narrow.status_code == 200 and narrow.json()["scope"] == "consent:read"
    assert _segments(narrow.json()["access_token"])[1]["scope"] == "consent:read"


def test_token_endpoint_refuses_a_wrong_secret(client: TestClient) -> None:
    """RFC 6749 5.2: invalid_client is a 401; with Basic the challenge uses the Basic scheme."""
    new = _new_client(client)
    cases = [
        ("basic, wrong secret", {"grant_type": "client_credentials"}, _basic(new.client_id, "wrong")),
        ("basic, unknown client", {"grant_type": "client_credentials"}, _basic("cl_nobody", new.client_secret)),
        (
            "post, wrong secret",
            {"grant_type": "client_credentials", "client_id": new.client_id, "client_secret": "wrong"},
            {},
        ),
        ("post, no secret", {"grant_type": "client_credentials", "client_id": new.client_id}, {}),
    ]
    for label, data, headers in cases:
        response = client.post("/oauth/token", data=data, headers=headers)
        assert response.status_code == 401, (label, response.text)
        assert response.json()["error"] == "invalid_client", label
        assert "access_token" not in response.json()
        assert "www-authenticate" in response.headers, label
        if headers:
            assert response.headers["www-authenticate"].startswith("Basic"), label
    # Not base64 at all: characters outside ASCII (a 500 before)
    non_ascii = {b"Authorization": "Basic é".encode()}
    response = client.post("/oauth/token", data={"grant_type": "client_credentials"}, headers=non_ascii)
    assert response.status_code == 401 and response.json()["error"] == "invalid_client", response.text
    assert response.headers["www-authenticate"].startswith("Basic")


def test_token_endpoint_refuses_other_grants_and_wider_scopes(client: TestClient) -> None:
    """RFC 6749 5.2: unsupported_grant_type and invalid_scope are 400s; no token is issued."""
    new = _new_client(client, "consent:read")
    for grant_type in ("password", "authorization_code", "refresh_token", ""):
        response = client.post("/oauth/token", data={"grant_type": grant_type}, headers=_basic(*_id_secret(new)))
        assert response.status_code == 400, (grant_type, response.text)
        assert response.json()["error"] == "unsupported_grant_type"
    # RFC 6749 5.2: a missing grant_type is invalid_request (unsupported_grant_type is tolerated)
    response = client.post(
        "/oauth/token",
        content=b"",
        headers={**_basic(*_id_secret(new)), "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"] in {"invalid_request", "unsupported_grant_type"}
    for scope in ("consent:write", "consent:read consent:write", "admin", "no-such-scope"):
        response = client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials", "scope": scope},
            headers=_basic(*_id_secret(new)),
        )
        assert response.status_code == 400, (scope, response.text)
        assert response.json()["error"] == "invalid_scope", scope
        assert "access_token" not in response.json()
    # Not a form at all: still OAuth's error object (what client libraries read), not a problem+json
    for content, content_type in [(b'{"grant_type": "client_credentials"}', "application/json"), (b"\xff=", None)]:
        headers = {**_basic(*_id_secret(new)), "Content-Type": content_type or "application/x-www-form-urlencoded"}
        response = client.post("/oauth/token", content=content, headers=headers)
        assert response.status_code == 400 and response.headers["content-type"] == "application/json", response.text
        assert response.json()["error"] == "invalid_request" and response.json()["error_description"]
    # A blank scope is no scope asked (RFC 6749 3.3): the client's own, not a token for nothing
    blank = client.post(
        "/oauth/token", data={"grant_type": "client_credentials", "scope": "  "}, headers=_basic(*_id_secret(new))
    )
    assert blank.status_code == 200 and blank.json()["scope"] == "consent:read", blank.text


def test_issued_token_is_an_rfc9068_access_token_verifiable_with_the_jwks(client: TestClient) -> None:
    new = _new_client(client, "consent:read consent:check")
    response = client.post("/oauth/token", data={"grant_type": "client_credentials"}, headers=_basic(*_id_secret(new)))
    assert response.status_code == 200
    token = response.json()["access_token"]
    header, claims, signature = _segments(token)

    # RFC 9068 2.1: typ at+jwt, an asymmetric algorithm; the kid names a published key
    assert header["typ"] == "at+jwt"
    assert header["alg"] == "ES256"
    jwks = client.get("/.well-known/jwks.json").json()
    by_kid = {key["kid"]: key for key in jwks["keys"]}
    assert header["kid"] in by_kid
    assert all("d" not in key for key in jwks["keys"]), "the JWKS must not publish private key material"

    # RFC 9068 2.2: iss, exp, aud, sub, client_id, iat, jti; RFC 9068 2.2.3: scope
    assert claims["iss"] == ISSUER
    assert claims["aud"] == AUDIENCE
    assert claims["exp"] - claims["iat"] == 900
    assert abs(claims["iat"] - time.time()) < 60
    assert claims["client_id"] == new.client_id
    assert claims["sub"] == new.client_id
    assert claims["scope"].split() == ["consent:read", "consent:check"]
    assert isinstance(claims["jti"], str) and len(claims["jti"]) >= 16
    again = client.post("/oauth/token", data={"grant_type": "client_credentials"}, headers=_basic(*_id_secret(new)))
    assert _segments(again.json()["access_token"])[1]["jti"] != claims["jti"]

    # Verified without joserfc (no other JOSE library is installed): ES256 by hand with `cryptography`.
    jwk = by_kid[header["kid"]]
    assert jwk["kty"] == "EC" and jwk["crv"] == "P-256"
    signing_input = token.rsplit(".", 1)[0].encode("ascii")
    assert len(signature) == 64  # RFC 7518 3.4: R || S, 32 bytes each
    _verify_es256(jwk, signing_input, signature)
    with pytest.raises(InvalidSignature):
        _verify_es256(jwk, signing_input + b"x", signature)


def _verify_es256(jwk: dict[str, Any], signing_input: bytes, signature: bytes) -> None:
    x = int.from_bytes(_unb64url(jwk["x"]), "big")
    y = int.from_bytes(_unb64url(jwk["y"]), "big")
    public_key = ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    public_key.verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(hashes.SHA256()))


def test_client_secret_is_not_stored_in_clear(client: TestClient) -> None:
    new = _new_client(client)
    rows = run(client, _api_client_rows)
    row = next(r for r in rows if r["client_id"] == new.client_id)
    stored = " ".join(str(value) for value in row.values())
    assert new.client_secret not in stored
    assert base64.b64encode(new.client_secret.encode()).decode() not in stored
    assert new.client_secret.encode().hex() not in stored
    # and the secret still authenticates, so what is stored is derived from it
    ok = client.post("/oauth/token", data={"grant_type": "client_credentials"}, headers=_basic(*_id_secret(new)))
    assert ok.status_code == 200


def test_the_metadata_names_what_the_server_does(client: TestClient) -> None:
    """RFC 8414: the token endpoint it names issues tokens by client credentials; no response type is offered, as
    there is no authorization endpoint (an implicit grant's `token` was listed before)."""
    metadata = client.get("/.well-known/oauth-authorization-server").json()
    assert metadata["grant_types_supported"] == ["client_credentials"]
    assert metadata["response_types_supported"] == [] and "authorization_endpoint" not in metadata
    new = _new_client(client, "consent:check")
    path = metadata["token_endpoint"].removeprefix(metadata["issuer"])
    issued = client.post(path, data={"grant_type": "client_credentials"}, headers=_basic(*_id_secret(new)))
    assert issued.status_code == 200 and issued.json()["scope"] == "consent:check"


def test_clients_create_refuses_a_client_that_could_not_be_used(
    cli_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python -m server clients create`: a name the column cannot hold was a traceback, and a client without any
    scope or name was created. Each is now refused with the reason (exit 2)."""
    for name, scopes, says in [
        ("x" * 129, "consent:check", "1 to 128 printable characters"),
        ("  ", "consent:check", "1 to 128 printable characters"),
        ("crm\n", "consent:check", ""),  # stripped: fine
        ("crm", "", "at least one scope"),
        ("crm", "consent:everything", "unknown scope"),
    ]:
        code = cli_main(["clients", "create", "--name", name, "--scopes", scopes])
        out, err = capsys.readouterr()
        if says:
            assert code == 2 and says in err and out == "", (name, scopes, err)
        else:
            assert code == 0 and json.loads(out)["name"] == "crm", out
