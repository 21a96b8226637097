"""A receipt's compact JWS, built with `cryptography` directly (`server.proof.receipts`), is the token joserfc's
`jwt.encode` makes: the same header and payload segments, byte for byte (ECDSA signatures are random, so the third
segment differs every time), and a signature that joserfc and an independent verifier accept under the JWKS."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from joserfc import jws, jwt

from server.auth.keys import ALGORITHM, KeyStore
from server.proof.receipts import RECEIPT_TYP, sign_receipt
from tests import independent

PAYLOADS: list[dict[str, Any]] = [
    {"consentReceiptID": "r-1", "iat": 1767225600, "events": [{"id": "e", "hash": "ab" * 32}], "sensitive": False},
    # non-ASCII kept as UTF-8 by joserfc's claims encoding; escapes of quotes, controls and separators
    {"piiPrincipalId": "Zoë Ørsted 李", "x": 'quote " backslash \\ tab \t nul \x00 del \x7f', "ls": "\u2028\u2029"},
    {"emoji": "\U0001f36a", "n": [0, -1, 2**53, 1.5], "none": None, "nested": {"b": 1, "a": [True, {"c": ""}]}},
]


@pytest.fixture
def keys(tmp_path: Path) -> KeyStore:
    return KeyStore(tmp_path).load()


@pytest.mark.parametrize("payload", PAYLOADS)
def test_the_hand_built_receipt_is_joserfcs_token(keys: KeyStore, payload: dict[str, Any]) -> None:
    token = sign_receipt(keys, payload)
    expected = jwt.encode({"alg": ALGORITHM, "kid": keys.active.kid, "typ": RECEIPT_TYP}, payload, keys.active)
    assert token.split(".")[:2] == expected.split(".")[:2]

    verified = jws.deserialize_compact(token, keys.active, algorithms=[ALGORITHM])
    assert verified.headers() == {"typ": RECEIPT_TYP, "alg": ALGORITHM, "kid": keys.active.kid}
    assert jwt.decode(token, keys.key_set, algorithms=[ALGORITHM]).claims == payload
    header, _ = independent.verify_es256(token, keys.jwks())
    assert header["kid"] == keys.active.kid


def test_a_tampered_receipt_does_not_verify(keys: KeyStore) -> None:
    header, _payload, signature = sign_receipt(keys, PAYLOADS[0]).split(".")
    other = sign_receipt(keys, PAYLOADS[1]).split(".")[1]
    with pytest.raises(AssertionError, match="does not verify"):
        independent.verify_es256(f"{header}.{other}.{signature}", keys.jwks())
