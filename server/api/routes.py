"""The API's endpoints (machine clients, public proof and policy reads, operations), each with its auth rule.

`server.app` gathers them with every other feature's; nothing is routed that is not listed there."""

from __future__ import annotations

from server.api import checks, clients, oauth, ops, policies, proof, schemas, subjects, wellknown
from server.kernel.endpoints import METRICS, PUBLIC, Endpoint, Param
from server.kernel.idempotency import OPTIONAL
from server.visibility import FEED_OVERLAP

DATE_TIME = {"type": "string", "format": "date-time"}
REF = Param("ref", "path", "the company's own id of the subject (1-255 characters)")
CLIENT_ID = Param("client_id", "path", "the API client's id (cl_...)")
CLIENT_PROBLEMS = {
    "404": "unknown-client: no API client has this id",
    "409": "client-revoked: the client is revoked (final); own-client: a client cannot revoke its own access",
}


API_ENDPOINTS: list[Endpoint] = [
    # The consent checks come first: Starlette tries routes in order, and a check is the request marketing tools
    # send most, before every send (bench/README.md, "Where a single check's time goes").
    Endpoint(
        "/v1/consents/check",
        "GET",
        checks.check_one,
        "consent:check",
        "May we contact this subject for this purpose on this channel?",
        "check",
        params=[
            Param("subject", "query", "subject ref", required=True),
            Param("purpose", "query", "purpose code", required=True),
            Param("channel", "query", "channel code", required=True),
            Param("at", "query", "answer as of this ISO-8601 instant (from the ledger)", schema=DATE_TIME),
        ],
        response=schemas.CheckOut,
    ),
    Endpoint(
        "/v1/consents/check",
        "POST",
        checks.check_batch,
        "consent:check",
        "Up to 10,000 checks, answered in request order",
        "check",
        body=schemas.BatchIn,
        response=schemas.BatchOut,
        responses={"413": "more than 10,000 checks (the problem says the limit), or a body over MAX_BODY_BYTES"},
    ),
    Endpoint(
        "/v1/consents/check/stream",
        "POST",
        checks.check_stream,
        "consent:check",
        "NDJSON checks in, NDJSON answers out (unbounded input, constant memory)",
        "check",
        body_media_type="application/x-ndjson",
        response_media_type="application/x-ndjson",
    ),
    Endpoint(
        "/oauth/token",
        "POST",
        oauth.token,
        PUBLIC,
        "Get an access token (client credentials)",
        "auth",
        body_media_type="application/x-www-form-urlencoded",
        response=schemas.TokenOut,
        responses={
            "400": "invalid_request (not a form, no grant_type), unsupported_grant_type or invalid_scope",
            "401": "invalid_client: no client authentication, an unknown or revoked client, a wrong secret, or a "
            "previous secret past its overlap",
        },
    ),
    Endpoint("/.well-known/jwks.json", "GET", wellknown.jwks, PUBLIC, "Signing keys (JWKS)", "auth"),
    Endpoint(
        "/.well-known/oauth-authorization-server",
        "GET",
        wellknown.oauth_metadata,
        PUBLIC,
        "OAuth2 server metadata (RFC 8414)",
        "auth",
    ),
    Endpoint(
        "/v1/subjects/{ref}/consents",
        "POST",
        subjects.record_consents,
        "consent:write",
        "Record decisions (one transaction)",
        "ledger",
        params=[REF],
        body=schemas.RecordIn,
        response=schemas.RecordOut,
        idempotency=OPTIONAL,
    ),
    Endpoint(
        "/v1/subjects/{ref}/consents",
        "GET",
        subjects.read_consents,
        "consent:read",
        "Current consent matrix, or at an instant",
        "ledger",
        params=[
            REF,
            Param(
                "at",
                "query",
                "ISO-8601 instant with time zone",
                schema={"type": "string", "format": "date-time"},
            ),
        ],
        response=schemas.MatrixOut,
    ),
    Endpoint(
        "/v1/subjects/{ref}/events",
        "GET",
        subjects.read_events,
        "consent:read",
        "The subject's ledger, paginated",
        "ledger",
        params=[
            REF,
            Param(
                "limit",
                "query",
                "page size, 1-1000 (default 100)",
                schema={"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
            ),
            Param("cursor", "query", "next_cursor of the previous page"),
        ],
        response=schemas.EventsOut,
    ),
    Endpoint(
        "/v1/audiences/{purpose}/{channel}",
        "GET",
        checks.audience,
        "consent:check",
        "Every subject currently allowed (NDJSON), or the changes since an instant",
        "check",
        params=[
            Param("purpose", "path", "purpose code"),
            Param("channel", "path", "channel code"),
            Param(
                "since",
                "query",
                "only subjects whose answer may have changed after this instant, each as {ref, allowed, reason}; "
                "pass the X-Next-Since header of the previous export or poll (it overlaps the previous read by "
                f"{FEED_OVERLAP.total_seconds():.0f} s, so a line may come twice: apply it as the subject's "
                "current answer)",
                schema=DATE_TIME,
            ),
        ],
        response_media_type="application/x-ndjson",
    ),
    Endpoint(
        "/v1/subjects/{ref}/proof",
        "GET",
        proof.subject_proof,
        "proof:read",
        "Proof bundle (zip): signed manifest, events, receipts, texts, snapshots, inclusion proofs, report",
        "proof",
        params=[
            REF,
            Param("purpose", "query", "only this purpose"),
            Param("channel", "query", "only this channel"),
            Param("from", "query", "events recorded at or after this instant", schema=DATE_TIME),
            Param(
                "to", "query", "events recorded before this instant (and the state as they leave it)", schema=DATE_TIME
            ),
        ],
        response_media_type="application/zip",
    ),
    Endpoint(
        "/v1/subjects/{ref}/receipts",
        "GET",
        proof.subject_receipts,
        "proof:read",
        "Signed consent receipts (compact JWS, Kantara v1.1 payload)",
        "proof",
        params=[REF],
    ),
    Endpoint(
        "/v1/ledger/checkpoints/latest",
        "GET",
        proof.latest_checkpoint,
        PUBLIC,
        "The newest signed checkpoint of the transparency log",
        "proof",
    ),
    Endpoint(
        "/v1/ledger/checkpoints/{size}",
        "GET",
        proof.checkpoint_at,
        PUBLIC,
        "A published checkpoint, by tree size",
        "proof",
        params=[Param("size", "path", "tree size", schema={"type": "integer"})],
    ),
    Endpoint(
        "/v1/ledger/proofs/inclusion",
        "GET",
        proof.inclusion_proof,
        "proof:read",
        "RFC 9162 inclusion proof of an event",
        "proof",
        params=[
            Param("event_id", "query", "event id", required=True),
            Param("tree_size", "query", "checkpoint size (default: latest)", schema={"type": "integer"}),
        ],
    ),
    Endpoint(
        "/v1/ledger/proofs/consistency",
        "GET",
        proof.consistency_proof,
        PUBLIC,
        "RFC 9162 consistency proof between two checkpoints",
        "proof",
        params=[
            Param("from", "query", "older checkpoint size", required=True, schema={"type": "integer"}),
            Param("to", "query", "newer checkpoint size", required=True, schema={"type": "integer"}),
        ],
    ),
    Endpoint(
        "/v1/ledger/export",
        "GET",
        proof.ledger_export,
        "admin",
        "NDJSON of events in a time range, then a signed checkpoint",
        "proof",
        params=[
            Param("from", "query", "recorded at or after", schema=DATE_TIME),
            Param("to", "query", "recorded before", schema=DATE_TIME),
        ],
        response_media_type="application/x-ndjson",
    ),
    Endpoint(
        "/v1/clients",
        "GET",
        clients.clients_list,
        "admin",
        "Every API client, revoked ones included (no secrets)",
        "clients",
        response=schemas.ClientsOut,
    ),
    Endpoint(
        "/v1/clients/{client_id}/revoke",
        "POST",
        clients.client_revoke,
        "admin",
        "Revoke a client: no new token, its tokens refused by every process within a second",
        "clients",
        params=[CLIENT_ID],
        body=None,
        response=schemas.ClientOut,
        responses=CLIENT_PROBLEMS,
    ),
    Endpoint(
        "/v1/clients/{client_id}/rotate-secret",
        "POST",
        clients.client_rotate_secret,
        "admin",
        "A new secret, shown once; the previous one works for CLIENT_SECRET_OVERLAP_S",
        "clients",
        params=[CLIENT_ID],
        body=schemas.RotateIn,
        response=schemas.RotatedOut,
        responses=CLIENT_PROBLEMS,
    ),
    Endpoint(
        "/v1/clients/{client_id}/scopes",
        "PUT",
        clients.client_scopes,
        "admin",
        "Replace a client's scopes; tokens carrying a scope taken away are refused",
        "clients",
        params=[CLIENT_ID],
        body=schemas.ScopesIn,
        response=schemas.ClientOut,
        responses=CLIENT_PROBLEMS,
    ),
    Endpoint(
        "/v1/policies",
        "GET",
        policies.list_policies,
        PUBLIC,
        "Published policy versions",
        "policies",
        response=None,
    ),
    Endpoint(
        "/policies/{document}/{version}/{lang}",
        "GET",
        policies.policy_text,
        PUBLIC,
        "The exact published text, with its SHA-256",
        "policies",
        params=[
            Param("document", "path", "document"),
            Param("version", "path", "version"),
            Param("lang", "path", "language"),
        ],
        response_media_type="text/markdown",
    ),
    Endpoint("/healthz", "GET", ops.healthz, PUBLIC, "Liveness", "ops"),
    Endpoint("/readyz", "GET", ops.readyz, PUBLIC, "Readiness (database answers, disk has room)", "ops"),
    Endpoint(
        "/problems/{slug}",
        "GET",
        ops.problem_type,
        PUBLIC,
        "Documentation of a problem type",
        "ops",
        params=[Param("slug", "path", "problem type")],
        response_media_type="text/plain",
    ),
    Endpoint(
        "/metrics",
        "GET",
        ops.metrics,
        METRICS,
        "Prometheus metrics of this process (Bearer METRICS_TOKEN; unset: open, 404 in production)",
        "ops",
        response_media_type="text/plain",
        responses={
            "401": "METRICS_TOKEN is set and the request does not carry it as a bearer token",
            "404": "production without METRICS_TOKEN: metrics are not served",
        },
    ),
    Endpoint("/openapi.json", "GET", ops.openapi, PUBLIC, "This OpenAPI document", "ops"),
]
