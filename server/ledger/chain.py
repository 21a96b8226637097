"""The hash chain: canonical bytes of an event and their SHA-256 (invariant 4, docs/design.md).

`hash = sha256(JCS(body))` where JCS is RFC 8785 JSON canonicalisation and `body` is exactly the object
`event_body()` returns: every field of the event plus `prev_hash`. The first event of a subject has
`prev_hash = GENESIS`. A verifier needs nothing but the exported JSON, an RFC 8785 implementation and SHA-256.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import orjson
import rfc8785

GENESIS = "0" * 64


def timestamp(value: datetime) -> str:
    """The one text form of instants in hashed bodies: UTC, microseconds, `Z`."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_body(
    *,
    event_id: str,
    subject: str,
    seq: int,
    purpose: str,
    channel: str,
    action: str,
    status: str,
    policy: dict[str, str],
    touchpoint: str,
    method: str,
    actor: dict[str, str | None],
    ui_snapshot: str | None,
    evidence: dict[str, Any],
    recorded_at: datetime,
    valid_until: datetime | None,
    prev_hash: str,
) -> dict[str, Any]:
    return {
        "id": event_id,
        "subject": subject,
        "seq": seq,
        "purpose": purpose,
        "channel": channel,
        "action": action,
        "status": status,
        "policy": policy,
        "touchpoint": touchpoint,
        "method": method,
        "actor": actor,
        "ui_snapshot": ui_snapshot,
        "evidence": evidence,
        "recorded_at": timestamp(recorded_at),
        "valid_until": timestamp(valid_until) if valid_until else None,
        "prev_hash": prev_hash,
    }


def canonical(body: dict[str, Any]) -> bytes:
    r"""The RFC 8785 bytes of `body`.

    For what an event body holds (objects with ASCII keys, strings, integers of at most 53 bits, booleans, null),
    RFC 8785 is orjson's output with sorted keys: no whitespace, ASCII keys in code-unit order, strings escaped as
    ECMAScript's `JSON.stringify` escapes them (\" \\ \b \f \n \r \t, other control characters as lowercase
    \u00xx, nothing else) and integers in decimal. orjson does it in C; the `rfc8785` package is pure Python and
    took ~0.1 ms an event on this path (bench/README.md, "Writes (issue 24)"). A property test holds the two equal
    over every character. Anything else (a float, a larger integer, a non-ASCII key, a lone surrogate) goes
    through `rfc8785`."""
    if _plain(body):
        try:
            return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:  # a lone surrogate: not UTF-8
            pass
    return rfc8785.dumps(body)


def _plain(value: Any) -> bool:
    if value is None or isinstance(value, (str, bool)):
        return True
    if isinstance(value, int):
        return -_SAFE_INTEGER <= value <= _SAFE_INTEGER
    if isinstance(value, dict):
        return all(type(k) is str and k.isascii() and _plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    return False


_SAFE_INTEGER = 2**53 - 1  # RFC 8785 3.2.2.3: numbers are IEEE 754 doubles


def body_hash(body: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(body)).hexdigest()


def row_body(row: dict[str, Any], pseudonym: str, policy: dict[str, str]) -> dict[str, Any]:
    """The hashed body of an event as stored (a `consent_events` row as a dict), given its subject's pseudonym and
    its policy reference {document, version, lang, sha256}."""
    return event_body(
        event_id=str(row["id"]),
        subject=pseudonym,
        seq=row["seq"],
        purpose=row["purpose_id"],
        channel=row["channel_id"],
        action=row["action"],
        status=row["status"],
        policy=policy,
        touchpoint=row["touchpoint"],
        method=row["method"],
        actor={"type": row["actor_type"], "id": row["actor_id"]},
        ui_snapshot=row["ui_snapshot_sha256"],
        evidence=row["evidence"],
        recorded_at=row["recorded_at"],
        valid_until=row["valid_until"],
        prev_hash=row["prev_hash"],
    )
