"""Contact data on the subject row: normalising, validating, and the suppression list of erased addresses.

A suppression entry is HMAC-SHA256(server secret, normalised email or E.164 phone): kept after erasure
(GDPR 17 and 21(3)) so the person is never re-imported or contacted, without keeping the address itself.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import datetime

from tortoise.backends.base.client import BaseDBAsyncClient

from server.db import placeholders
from server.errors import InvalidRequest
from server.models import Suppression

_EMAIL = re.compile(r"^[^@\s<>\"',;]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})+$")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_PHONE_NOISE = re.compile(r"[\s().\-/]")
LOCALES = ("fr", "en")
COUNTRY_CODES = {"FR": "33", "BE": "32", "LU": "352", "DE": "49", "ES": "34", "IT": "39", "GB": "44"}


class Suppressed(InvalidRequest):
    """The address or number belongs to an erased person and may not be set or imported again."""

    slug = "suppressed-contact"
    title = "This contact point is on the suppression list"


def normalise_email(value: str) -> str:
    email = value.strip().lower()
    if len(email) > 254 or not _EMAIL.fullmatch(email):
        raise InvalidRequest("this is not a valid email address", parameter="email")
    return email


def normalise_phone(value: str, jurisdiction: str = "FR") -> str:
    """E.164 (`+33612345678`): national numbers get the controller's country code."""
    digits = _PHONE_NOISE.sub("", value.strip())
    if digits.startswith("00"):
        digits = "+" + digits[2:]
    elif digits.startswith("0") and jurisdiction in COUNTRY_CODES:
        digits = f"+{COUNTRY_CODES[jurisdiction]}{digits[1:]}"
    if not _E164.fullmatch(digits):
        raise InvalidRequest(
            "this is not a valid phone number (use the international form, e.g. +33...)", parameter="phone"
        )
    return digits


def normalise_locale(value: str) -> str:
    locale = value.strip().lower()
    if locale not in LOCALES:
        raise InvalidRequest(f"the language must be one of {', '.join(LOCALES)}", parameter="locale")
    return locale


def digest(secret: str, normalised: str) -> str:
    return hmac.new(secret.encode(), normalised.encode(), hashlib.sha256).hexdigest()


async def is_suppressed(secret: str, *, email: str | None = None, phone: str | None = None) -> bool:
    """True when the (already normalised) email or phone belongs to an erased person."""
    digests = [digest(secret, v) for v in (email, phone) if v]
    return bool(digests) and await Suppression.filter(digest__in=digests).exists()


async def refuse_suppressed(secret: str, *, email: str | None = None, phone: str | None = None) -> None:
    """Raise `Suppressed` when contact data about to be set or imported belongs to an erased person."""
    if await is_suppressed(secret, email=email, phone=phone):
        raise Suppressed(
            "this contact point belongs to a person whose data was erased at their request (GDPR 17): "
            "it may not be recorded or contacted again"
        )


async def suppress(conn: BaseDBAsyncClient, secret: str, kind: str, normalised: str, at: datetime) -> None:
    """Add one entry (idempotent, safe inside a transaction on both backends)."""
    ph = placeholders(conn, 3)
    await conn.execute_query(
        f"INSERT INTO suppressions (kind, digest, created_at) VALUES ({ph[0]}, {ph[1]}, {ph[2]}) "
        "ON CONFLICT (digest) DO NOTHING",
        [kind, digest(secret, normalised), at],
    )
