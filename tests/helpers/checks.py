"""The consent check as a client reads it (single, batch and stream agreeing), and the table of every reason it can
give, which the in-process checks and the stream's worker processes are both tested on."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.testclient import TestClient

PAST = datetime(2026, 8, 1, 9, tzinfo=UTC)  # before privacy-policy v2 (material for partners) came into force


def check(client: TestClient, headers: dict[str, str], ref: str, purpose: str, channel: str) -> dict[str, Any]:
    """The single check's answer, after asserting that batch and stream give the same answer field by field (they
    compute it their own way: `server.consent.bulk`)."""
    question = {"subject": ref, "purpose": purpose, "channel": channel}
    response = client.get("/v1/consents/check", params=question, headers=headers)
    assert response.status_code == 200, response.text
    single = response.json()
    batch = client.post("/v1/consents/check", json={"checks": [question]}, headers=headers)
    assert batch.status_code == 200, batch.text
    assert batch.json() == {"results": [{**question, **single}]}
    stream = client.post(
        "/v1/consents/check/stream",
        content=orjson.dumps(question) + b"\n",
        headers={**headers, "Content-Type": "application/x-ndjson"},
    )
    assert stream.status_code == 200, stream.text
    assert [orjson.loads(line) for line in stream.content.splitlines()] == [{"line": 1, **question, **single}]
    return dict(single)


# (name, decisions to record, purpose, channel, expected allowed, expected reason)
CASES: list[tuple[str, list[tuple[str, str, str]], str, str, bool, str]] = [
    ("granted", [("offers", "email", "grant")], "offers", "email", True, "granted"),
    ("soft_opt_in", [("offers", "sms", "soft_opt_in")], "offers", "sms", True, "soft_opt_in"),
    ("legitimate_interest", [("offers", "email", "grant")], "offers", "post", True, "legitimate_interest"),
    ("necessary", [("offers", "email", "grant")], "essential", "web", True, "necessary"),
    ("no_record", [("offers", "email", "grant")], "offers", "sms", False, "no_record"),
    ("refused", [("offers", "sms", "deny")], "offers", "sms", False, "refused"),
    ("withdrawn", [("offers", "sms", "grant"), ("offers", "sms", "withdraw")], "offers", "sms", False, "withdrawn"),
    ("expired by event", [("offers", "sms", "grant"), ("offers", "sms", "expire")], "offers", "sms", False, "expired"),
    ("pending_confirmation", [("newsletter", "email", "grant")], "newsletter", "email", False, "pending_confirmation"),
    (
        "confirmed",
        [("newsletter", "email", "grant"), ("newsletter", "email", "confirm")],
        "newsletter",
        "email",
        True,
        "granted",
    ),
    ("objected", [("offers", "sms", "grant"), ("offers", "sms", "object")], "offers", "sms", False, "objected"),
    ("objection beats legitimate interest", [("offers", "post", "object")], "offers", "post", False, "objected"),
]
