"""Signed receipts for banner choices: a compact JWS (ES256, `kid` published in /.well-known/jwks.json).

The visitor's browser gets it back from `POST /v1/cookie-consents`; anyone holding it can check offline, with the
published keys, which events were recorded for which consent id, under which policy text and banner text.
"""

from __future__ import annotations

from typing import Any

import orjson
from joserfc import jws

from server.auth.keys import ALGORITHM, KeyStore

RECEIPT_TYPE = "consent-receipt+jws"


def sign_receipt(keys: KeyStore, claims: dict[str, Any]) -> str:
    key = keys.active
    header = {"alg": ALGORITHM, "kid": key.kid, "typ": RECEIPT_TYPE}
    return jws.serialize_compact(header, orjson.dumps(claims, option=orjson.OPT_SORT_KEYS), key, algorithms=[ALGORITHM])


def read_receipt(keys: KeyStore, token: str) -> dict[str, Any]:
    """Verify with any published key (old ones included) and return the claims; raises joserfc errors if invalid."""
    signature = jws.deserialize_compact(token, keys.key_set, algorithms=[ALGORITHM])
    claims: dict[str, Any] = orjson.loads(signature.payload)
    return claims
