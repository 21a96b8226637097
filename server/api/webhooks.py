"""The calls this service makes to other systems, for the OpenAPI document's `webhooks` (OpenAPI 3.1)."""

from __future__ import annotations

from typing import Any

from server.recipients.schema import NOTICE_SCHEMA

COMPONENTS: dict[str, Any] = {"ConsentNotice": NOTICE_SCHEMA}
WEBHOOKS: dict[str, Any] = {
    "consentNotice": {
        "post": {
            "summary": "A change told to a recipient (GDPR 19): withdrawal, objection, erasure, restriction...",
            "description": "Sent by this service to each registered recipient (`python -m server recipients "
            "add`). The body is a compact JWT whose claims are `ConsentNotice`.",
            "requestBody": {
                "required": True,
                "content": {
                    "application/jwt": {
                        "schema": {
                            "type": "string",
                            "description": "compact JWS; its payload is #/components/schemas/ConsentNotice",
                        }
                    }
                },
            },
            "responses": {
                "200": {"description": "acknowledged (any 2xx); the body's SHA-256 is kept as proof"},
                "503": {"description": "try later (as any 5xx, 408, 429): the recipient's other notices wait"},
            },
        }
    }
}
