"""Consent receipts: a Kantara Consent Receipt v1.1-shaped record of one record call, signed as a compact JWS.

The payload validates against the Kantara v1.1 JSON schema; extra fields (`x-*`) tie each purpose entry to the
ledger event (id, seq, hash) so a receipt can be matched with the chain.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ec import ECDSA, EllipticCurvePrivateKey
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.hashes import SHA256
from joserfc.jwk import ECKey

from server.auth.keys import ALGORITHM, KeyStore
from server.policies.controller import Controller
from server.policies.snapshot import PolicyInfo, PurposeInfo

RECEIPT_TYP = "consent-receipt+jwt"
PII_BY_CHANNEL = {
    "email": "email address",
    "sms": "mobile phone number",
    "phone": "phone number",
    "post": "postal address",
    "push": "device push token",
    "web": "online identifiers (cookies)",
}
CONSENT_TYPE = {
    "consent": "EXPLICIT",
    "soft_opt_in": "IMPLIED",
    "legitimate_interest": "NOT_REQUIRED",
    "necessary": "NOT_REQUIRED",
}


def receipt_payload(
    *,
    controller: Controller,
    public_url: str,
    pseudonym: str,
    policy: PolicyInfo,
    touchpoint: str,
    method: str,
    recorded_at: datetime,
    decisions: Sequence[tuple[PurposeInfo, Any]],
    ui_snapshot: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """`decisions`: (purpose, recorded event) pairs; the event has channel, action, status, valid_until, id, ...

    The Kantara v1.1 fields, then JWT claims for readers of the JOSE kind (`iss`, `jti`, `iat`), what was shown
    (`policy`, `ui_snapshot`), how (`touchpoint`, `method`), the events it covers, and the touchpoint's `extra`."""
    purposes = []
    for info, event in decisions:
        basis = info.basis_for(event.channel)
        if event.status in ("granted", "soft_opt_in"):
            until = event.valid_until.date().isoformat() if event.valid_until else "no fixed end"
            termination = f"Valid until {until}; can be withdrawn at any time, as easily as it was given."
        else:
            termination = f"{event.status.replace('_', ' ').capitalize()} on {recorded_at.date().isoformat()}."
        entry: dict[str, Any] = {
            "purpose": info.titles.get(policy.lang) or info.titles.get("en") or info.code,
            "purposeCategory": [info.code],
            "consentType": CONSENT_TYPE.get(basis, "EXPLICIT"),
            "piiCategory": [PII_BY_CHANNEL.get(event.channel, event.channel)],
            "primaryPurpose": False,
            "termination": termination,
            "thirdPartyDisclosure": bool(info.third_parties),
            "x-channel": event.channel,
            "x-action": event.action,
            "x-status": event.status,
            "x-legalBasis": basis,
            "x-eventId": event.id,
            "x-eventSeq": event.seq,
            "x-eventHash": event.hash,
        }
        if info.third_parties:
            entry["thirdPartyName"] = ", ".join(info.third_parties)
        purposes.append(entry)
    receipt_id = str(uuid.uuid4())
    return {
        "version": "KI-CR-v1.1.0",
        "jurisdiction": controller.jurisdiction,
        "consentTimestamp": int(recorded_at.timestamp()),
        "collectionMethod": f"{touchpoint}:{method}",
        "consentReceiptID": receipt_id,
        "language": policy.lang,
        "piiPrincipalId": pseudonym,
        "piiControllers": [
            {
                "piiController": controller.name,
                "onBehalf": False,
                "contact": controller.contact,
                "address": {"streetAddress": controller.address},
                "email": controller.email,
                "phone": controller.phone,
                "piiControllerUrl": controller.url,
            }
        ],
        "policyUrl": f"{public_url}/policies/{policy.document}/{policy.version}/{policy.lang}",
        "x-policySha256": policy.sha256,
        "services": [{"service": controller.name, "purposes": purposes}],
        "sensitive": False,
        "spiCat": [],
        "iss": public_url,
        "jti": receipt_id,
        "iat": int(recorded_at.timestamp()),
        "policy": {"version": policy.label, "sha256": policy.sha256},
        "ui_snapshot": ui_snapshot,
        "touchpoint": touchpoint,
        "method": method,
        "events": [
            {"id": e.id, "purpose": e.purpose, "channel": e.channel, "status": e.status, "hash": e.hash}
            for _, e in decisions
        ],
        **(extra or {}),
    }


def _b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


class _Signer:
    """One signing key's ready parts: the JWS header segment (the same for every receipt it signs) and the
    `cryptography` private key (joserfc's `get_op_key("sign")`, which also checks the key may sign)."""

    __slots__ = ("header", "key", "private")

    def __init__(self, key: ECKey) -> None:
        # The header as joserfc's `jwt.encode` writes it: its default `typ` first (then overwritten), ASCII JSON.
        header = {"typ": RECEIPT_TYP, "alg": ALGORITHM, "kid": key.kid}
        self.header = _b64url(json.dumps(header, ensure_ascii=True, separators=(",", ":")).encode("ascii"))
        self.key = key
        private = key.get_op_key("sign")
        if not isinstance(private, EllipticCurvePrivateKey) or private.curve.key_size != 256:
            raise TypeError(f"signing key {key.kid} is not a P-256 private key")
        self.private = private

    def sign(self, payload: dict[str, Any]) -> str:
        """The compact JWS of `payload` (RFC 7515 7.1), ES256 (RFC 7518 3.4: the signature is r || s, 32 bytes
        each, not DER). The payload is joserfc's JWT claims encoding: compact JSON, non-ASCII kept, UTF-8."""
        body = _b64url(json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
        signing_input = self.header + b"." + body
        r, s = decode_dss_signature(self.private.sign(signing_input, ECDSA(SHA256())))
        return (signing_input + b"." + _b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))).decode("ascii")


def sign_receipt(keys: KeyStore, payload: dict[str, Any]) -> str:
    """The receipt's compact JWS under the active key; `ReceiptIssuer` keeps the key's `_Signer` between calls."""
    return _Signer(keys.active).sign(payload)


class ReceiptIssuer:
    """Builds and signs the receipt of a record call (used by the ledger inside the recording transaction)."""

    def __init__(self, keys: KeyStore, controller: Controller, public_url: str) -> None:
        self.keys = keys
        self.controller = controller
        self.public_url = public_url
        self._cached: _Signer | None = None

    def issue(self, **fields: Any) -> tuple[str, str]:
        """Returns (receipt id, compact JWS)."""
        payload = receipt_payload(controller=self.controller, public_url=self.public_url, **fields)
        return payload["consentReceiptID"], self._signer().sign(payload)

    def _signer(self) -> _Signer:
        """The active key's signer, made again when the active key changes (a rotation, here or in another
        process: `KeyStore.active` reads the directory again when it changed)."""
        key = self.keys.active
        signer = self._cached
        if signer is None or signer.key is not key:
            signer = self._cached = _Signer(key)
        return signer
