"""The claims of a notice to a recipient, as JSON Schema: published in `/openapi.json` (`webhooks.consentNotice`,
`components.schemas.ConsentNotice`), and the tests check every notice sent against it."""

from __future__ import annotations

from typing import Any

from server.recipients.outbox import KINDS

NOTICE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": (
        "The payload of the JWT POSTed to a recipient (GDPR 19): `Content-Type: application/jwt`, header typ "
        "`consent-notice+jwt`, ES256, checked against /.well-known/jwks.json. Delivery is at least once: drop a "
        "`jti` already seen. Answer 2xx to acknowledge; 5xx, 408 and 429 mean 'try me later'."
    ),
    "required": ["iss", "aud", "jti", "iat", "exp", "type", "subject", "changed_at"],
    "additionalProperties": False,
    "properties": {
        "iss": {"type": "string", "description": "this service's public URL"},
        "aud": {"type": "string", "description": "the recipient's registered URL"},
        "jti": {"type": "string", "format": "uuid", "description": "the notice id"},
        "iat": {"type": "integer", "description": "when this attempt was signed (Unix seconds)"},
        "exp": {"type": "integer", "description": "iat + 3600"},
        "type": {"type": "string", "enum": list(KINDS)},
        "subject": {"type": "string", "description": "the company's own ref of the person"},
        "changed_at": {"type": "string", "format": "date-time", "description": "when the change was made (UTC)"},
        "event_id": {"type": "string", "format": "uuid", "description": "withdrawal, objection: the ledger event"},
        "purpose": {"type": "string", "description": "withdrawal, objection"},
        "channel": {"type": "string", "description": "withdrawal, objection"},
        "fields": {
            "type": "object",
            "description": "rectification: each corrected field and its value when sent (null once erased)",
            "additionalProperties": {"type": ["string", "null"]},
        },
    },
}
