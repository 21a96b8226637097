"""Contact data on the subject row: normalising, validating, and the suppression list of erased addresses.

A suppression entry is HMAC-SHA256(server secret, normalised email or E.164 phone): kept after erasure
(GDPR 17 and 21(3)) so the person is never re-imported or contacted, without keeping the address itself. An address
or number replaced by another is kept the same way, linked to its subject, until an erasure suppresses it with the
current ones (`replace_contact`, `suppress_former`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import datetime

from tortoise.backends.base.client import BaseDBAsyncClient

from server.db import placeholders
from server.errors import InvalidRequest
from server.models import FormerContact, Subject, Suppression

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


def normalised_contact(value: str | None, kind: str, jurisdiction: str) -> str | None:
    """A stored email or phone in its normalised form (as it is hashed), or lower-cased when it is not valid any more
    (a value stored before a stricter rule); None for none."""
    if not value:
        return None
    try:
        return normalise_email(value) if kind == "email" else normalise_phone(value, jurisdiction)
    except InvalidRequest:
        return value.strip().lower()


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
    await _suppress_digest(conn, kind, digest(secret, normalised), at)


async def _suppress_digest(conn: BaseDBAsyncClient, kind: str, keyed: str, at: datetime) -> None:
    ph = placeholders(conn, 3)
    await conn.execute_query(
        f"INSERT INTO suppressions (kind, digest, created_at) VALUES ({ph[0]}, {ph[1]}, {ph[2]}) "
        "ON CONFLICT (digest) DO NOTHING",
        [kind, keyed, at],
    )


async def replace_contact(
    conn: BaseDBAsyncClient,
    secret: str,
    subject: Subject,
    changes: dict[str, str],
    at: datetime,
    jurisdiction: str,
) -> None:
    """Set `changes` (normalised `email`, `phone`, `locale`) on `subject`, read under the caller's lock of its row,
    keeping a keyed hash of each address or number it replaces (`FormerContact`)."""
    for kind in ("email", "phone"):
        old = normalised_contact(getattr(subject, kind), kind, jurisdiction)
        if kind in changes and old is not None and old != changes[kind]:
            ph = placeholders(conn, 4)
            await conn.execute_query(
                f"INSERT INTO former_contacts (subject_id, kind, digest, replaced_at) VALUES ({', '.join(ph)}) "
                "ON CONFLICT (subject_id, digest) DO NOTHING",
                [str(subject.id), kind, digest(secret, old), at],
            )
    if changes:
        await Subject.filter(id=subject.id).using_db(conn).update(**changes)


async def suppress_former(conn: BaseDBAsyncClient, subject_id: object, at: datetime) -> int:
    """At erasure: every address and number the subject had before its current ones goes to the suppression list,
    and its link to the subject is deleted. Returns how many there were."""
    rows = await FormerContact.filter(subject_id=subject_id).using_db(conn).values("kind", "digest")
    for row in rows:
        await _suppress_digest(conn, row["kind"], row["digest"], at)
    await FormerContact.filter(subject_id=subject_id).using_db(conn).delete()
    return len(rows)
