"""Parsing path and query parameters into domain values, with errors that name the parameter."""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime
from urllib.parse import unquote_plus

from server.errors import InvalidRequest

_REF = re.compile(r"^[^\x00-\x1f\x7f]{1,255}$")
# Control, format (zero-width, direction marks), line and paragraph separators, surrogates; Zs is handled apart.
_INVISIBLE = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


def query_values(query_string: bytes) -> dict[str, str]:
    """The query parameters as Starlette's `request.query_params` reads them (the last of repeated names wins, blank
    values kept, `+` and percent-escapes decoded as UTF-8 with replacement), in a few string operations instead of
    `urllib.parse.parse_qsl`'s general path: a fifth of a single consent check's time in the app, profiled
    (bench/README.md, "Where a single check's time goes"). tests/kernel/test_query_values.py compares the two on
    generated query strings."""
    values: dict[str, str] = {}
    for part in query_string.decode("latin-1").split("&"):
        if part:
            name, _, value = part.partition("=")
            if "%" in part or "+" in part:
                name, value = unquote_plus(name), unquote_plus(value)
            values[name] = value
    return values


def subject_ref(value: str, name: str = "ref") -> str:
    """A subject ref in NFC: 1-255 characters, not blank, without `/` or characters one cannot see or tell apart
    (listed in `InvalidRequest`'s documentation, /problems/invalid-request)."""
    ref = value if value.isascii() else unicodedata.normalize("NFC", value)
    if not _REF.fullmatch(ref) or not ref.strip() or "/" in ref or not (ref.isascii() or _visible(ref)):
        shown = value[:40] + ("..." if len(value) > 40 else "")
        raise InvalidRequest(
            f"{name} must be 1-255 characters without '/', control, format or unusual space characters "
            f"(got {len(value)} characters)",
            parameter=name,
            value=shown.encode("unicode_escape").decode(),
        )
    return ref


def _visible(ref: str) -> bool:
    for ch in ref:
        category = unicodedata.category(ch)
        if category in _INVISIBLE or (category == "Zs" and ch != " "):
            return False
    return True


def instant(value: str | None, name: str) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise InvalidRequest(f"{name}={value[:64]!r} is not an ISO-8601 date-time", parameter=name) from None
    if parsed.tzinfo is None:
        raise InvalidRequest(f"{name}={value[:64]!r} needs a time zone (e.g. Z)", parameter=name)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise InvalidRequest(f"{name}={value[:64]!r} is out of range", parameter=name) from None


def bounded_int(value: str | None, name: str, default: int, low: int, high: int) -> int:
    if value is None:
        return default
    # Leading zeros are fine (limit=0100), but the whole string stays short: int() of thousands of digits is slow,
    # and refused past 4,300.
    short = value.isascii() and value.isdigit() and len(value) <= 32 and len(value.lstrip("0")) <= len(str(high))
    if not short or not low <= int(value) <= high:
        raise InvalidRequest(f"{name}={value[:20]!r} must be an integer in [{low}, {high}]", parameter=name)
    return int(value)


def seq_cursor(value: str | None) -> int:
    """The `cursor` this API issues for event pages: `s<seq>`."""
    if not value:
        return 0
    digits = value[1:]
    if not (value.startswith("s") and digits.isascii() and digits.isdigit() and len(digits) <= 9):
        raise InvalidRequest(f"cursor={value[:40]!r} is not a cursor this API issued", parameter="cursor")
    return int(digits)


def iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None
