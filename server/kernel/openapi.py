"""The OpenAPI 3.1 document, generated from the endpoint declarations (so it cannot drift from the routes)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from server.kernel.endpoints import LINK_TOKEN, METRICS, Endpoint, is_oauth
from server.kernel.idempotency import HEADER, MAX_KEY_LENGTH, REPLAYED, REQUIRED
from server.settings import SCOPES

PROBLEM = {
    "type": "object",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string", "format": "uri-reference"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
    },
}

IDEMPOTENCY_KEY = {
    "name": HEADER,
    "in": "header",
    "description": (
        "IETF httpapi draft 'The Idempotency-Key HTTP Header Field': a key unique to this request (a UUID), quoted "
        f"or plain, 1-{MAX_KEY_LENGTH} printable ASCII characters. The same key with the same request (method, path, "
        f"query, body) within IDEMPOTENCY_KEY_HOURS (24 h) is answered with the first answer, `{REPLAYED}: true`, "
        "and nothing is done again; so a write whose answer was lost is sent again with its key. Keys are the "
        "client's own."
    ),
    "schema": {"type": "string", "minLength": 1},
}

OAUTH_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
}


def build_openapi(
    endpoints: Sequence[Endpoint],
    server_url: str,
    *,
    webhooks: Mapping[str, Any] | None = None,
    components: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The document of `endpoints`; `webhooks` and the schemas in `components` are the calls this service makes
    to others (OpenAPI 3.1 `webhooks`)."""
    schemas: dict[str, Any] = {"Problem": PROBLEM}
    paths: dict[str, dict[str, Any]] = {}
    for ep in endpoints:
        if not ep.in_schema:
            continue
        operation: dict[str, Any] = {
            "operationId": ep.operation_id,
            "summary": ep.summary,
            "tags": [ep.tag],
            "parameters": [
                {
                    "name": p.name,
                    "in": p.where,
                    "required": p.where == "path" or p.required,
                    "description": p.description,
                    "schema": p.schema,
                }
                for p in ep.params
            ]
            + ([IDEMPOTENCY_KEY | {"required": ep.idempotency == REQUIRED}] if ep.idempotency else []),
            "responses": _responses(ep, schemas),
        }
        operation["security"] = (
            [{"oauth2": [ep.auth]}] if is_oauth(ep.auth) else [{"metricsToken": []}] if ep.auth == METRICS else []
        )
        if ep.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {ep.body_media_type: {"schema": _ref(ep.body, schemas)}},
            }
        elif ep.body_media_type != "application/json":
            operation["requestBody"] = {"required": True, "content": {ep.body_media_type: {"schema": {}}}}
        paths.setdefault(ep.path, {})[ep.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Consent ledger API",
            "version": "1",
            "description": "Record, check and prove consent (GDPR / ePrivacy). Errors are RFC 9457 problem+json.",
        },
        "servers": [{"url": server_url}],
        "paths": paths,
        "webhooks": dict(webhooks or {}),
        "components": {
            "schemas": {**schemas, **(components or {})},
            "securitySchemes": {
                "oauth2": {
                    "type": "oauth2",
                    "flows": {
                        "clientCredentials": {
                            "tokenUrl": "/oauth/token",
                            "scopes": {s: f"{s} access" for s in SCOPES},
                        }
                    },
                },
                "metricsToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "METRICS_TOKEN, the operator's scraper token (server setting)",
                },
            },
        },
    }


def _responses(ep: Endpoint, schemas: dict[str, Any]) -> dict[str, Any]:
    """Success, then the statuses every endpoint of its kind can answer with, then the endpoint's own
    (`Endpoint.responses`). Problems are problem+json, except where the endpoint's media type is HTML (pages) or
    OAuth's error object (`/oauth/token`)."""
    ok = "201" if ep.method == "POST" and ep.path.endswith("/consents") else "200"
    if any(status.startswith("2") for status in ep.responses):
        ok = ""
    content: dict[str, Any] = {ep.response_media_type: {"schema": _ref(ep.response, schemas) if ep.response else {}}}
    responses: dict[str, Any] = {ok: {"description": "success", "content": content}} if ok else {}
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    if "text/html" in (ep.response_media_type, ep.error_media_type):
        errors: dict[str, Any] = {"text/html": {"schema": {"type": "string"}}}
    elif ep.path == "/oauth/token":  # RFC 6749 5.2, what OAuth client libraries read
        errors = {"application/json": {"schema": OAUTH_ERROR}}
    else:
        errors = problem
    generic: dict[str, str] = {}
    if is_oauth(ep.auth):
        generic["401"] = "missing or invalid access token"
        generic["403"] = "the token lacks the scope"
    if ep.auth == LINK_TOKEN:
        generic["403"] = "the link is missing, not valid or expired, or the form's CSRF token is wrong"
    if "{" in ep.path:
        generic["404"] = "nothing at this address (an unknown ref, id or size)"
    if ep.body is not None or ep.body_media_type != "application/json":
        generic["400"] = "the body is not valid JSON or form data"
        generic["413"] = "the body is larger than the server accepts (MAX_BODY_BYTES)"
    if ep.body is not None or ep.params:
        generic["422"] = "invalid request"
    if ep.method == "POST":
        generic["503"] = "the database stayed busy, nothing was recorded: send it again after Retry-After"
    if ep.idempotency:
        generic["400"] = f"{generic.get('400', 'bad request')}; or an {HEADER} header that is not a key"
        generic["409"] = f"the first request with this {HEADER} is still being carried out: send it again later"
        generic["422"] = f"{generic.get('422', 'invalid request')}; or an {HEADER} used for another request"
    for status, description in {**generic, **ep.responses}.items():
        if status.startswith("3"):
            responses[status] = {"description": description}
        else:
            responses[status] = {"description": description, "content": content if status[0] == "2" else errors}
    return dict(sorted(responses.items()))


def _ref(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, str]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in schema.pop("$defs", {}).items():
        schemas[name] = definition
    schemas[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}
