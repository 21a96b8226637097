"""`/v1/subjects/{ref}/...`: record decisions, read the consent matrix and the subject's ledger."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import orjson
from starlette.requests import Request
from starlette.responses import Response

from server.accesslog import log_access
from server.api.schemas import RecordIn
from server.consent.decide import SubjectFlags
from server.consent.matrix import decide_all, projected_states
from server.errors import ConfirmationByLinkOnly, InvalidRequest, NotFound
from server.kernel.bodies import read_json
from server.kernel.idempotency import settle
from server.kernel.params import bounded_int, instant, iso, seq_cursor, subject_ref
from server.ledger.append import Decision, RecordRequest, RecordResult, Snapshot
from server.ledger.replay import replay
from server.models import ConsentEvent, Subject
from server.optin.service import not_sent
from server.proof.events import exported_event
from server.services import Services, services_of


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json", headers=headers)


async def record_consents(request: Request) -> Response:
    """Record one or more decisions for a subject in one transaction (the subject is created on first write)."""
    services = services_of(request)
    ref = subject_ref(request.path_params["ref"])
    body = await read_json(request, RecordIn)
    client_id = request.state.access.client_id
    _refuse_what_only_the_person_or_the_service_records(body)
    evidence = body.evidence.model_dump(exclude_none=True) if body.evidence else {}
    recorded = await services.optin.record(
        RecordRequest(
            ref=ref,
            policy=body.policy.label,
            decisions=[Decision(d.purpose, d.channel, d.action) for d in body.decisions],
            touchpoint=body.touchpoint,
            method=body.method,
            # The client that recorded it is always in the record; its agent beside it, in its own namespace (not
            # the desk's staff ids).
            actor_type="agent" if body.touchpoint == "agent" else "client",
            actor_id=f"{client_id}/{body.actor_id}" if body.touchpoint == "agent" and body.actor_id else client_id,
            evidence=evidence,
            snapshot=Snapshot(body.ui_snapshot.kind, body.ui_snapshot.content, body.ui_snapshot.content_type)
            if body.ui_snapshot
            else None,
            snapshot_sha256=body.ui_snapshot_sha256,
        ),
        # With an Idempotency-Key the write commits here with this answer; the mails' outcomes replace it after.
        recorded=lambda result: settle(lambda: _recorded(ref, result, not_sent(result.events))),
    )
    # Committed before any mail: a mail that fails leaves the grant pending, never unrecorded (`OptIn`).
    return _recorded(ref, recorded.result, recorded.confirmations)


def _recorded(ref: str, result: RecordResult, confirmations: list[dict[str, str]]) -> Response:
    events = [
        {
            "id": e.id,
            "seq": e.seq,
            "purpose": e.purpose,
            "channel": e.channel,
            "action": e.action,
            "status": e.status,
            "policy_version": e.policy_version,
            "recorded_at": iso(e.recorded_at),
            "valid_until": iso(e.valid_until),
            "prev_hash": e.prev_hash,
            "hash": e.hash,
        }
        for e in result.events
    ]
    location = f"/v1/subjects/{quote(ref, safe='')}/events"
    body_out = {"subject": ref, "events": events, "receipt": result.receipt, "confirmations": confirmations}
    return _json(body_out, status=201, headers={"Location": location})


def _refuse_what_only_the_person_or_the_service_records(body: RecordIn) -> None:
    """`confirm` is the person's click on the link the service mailed (GDPR 7(1): the mail and the click are the
    proof); a client records one only when importing a confirmation collected elsewhere (touchpoint `import`). And an
    agent id names an agent: it goes with touchpoint `agent` only."""
    if body.touchpoint != "import" and any(d.action == "confirm" for d in body.decisions):
        raise ConfirmationByLinkOnly(
            "'confirm' is recorded by the person's click on the confirmation link the service mails; an API client "
            "records it only when importing a confirmation collected elsewhere (touchpoint 'import')"
        )
    if body.actor_id is not None and body.touchpoint != "agent":
        raise InvalidRequest(
            "the body does not match the schema",
            errors=[{"location": "actor_id", "message": "names the client's agent: send it with touchpoint 'agent'"}],
        )


async def read_consents(request: Request) -> Response:
    """The subject's consent matrix now, or at `?at=` (derived from the ledger itself)."""
    services = services_of(request)
    ref = subject_ref(request.path_params["ref"])
    at_param = instant(request.query_params.get("at"), "at")
    subject = await _subject(ref)
    await _log_read(request, services, subject, "consents_read")
    catalog = await services.catalog.get()
    now = services.clock()
    at = at_param or now
    states = await projected_states(subject.id) if at_param is None else replay(await _event_rows(subject.id), at)
    flags = SubjectFlags(subject.erased_at, subject.restricted_at)
    consents = [
        {**cell.as_json(), "since": iso(cell.answer.since), "valid_until": iso(cell.answer.valid_until)}
        for cell in decide_all(catalog, flags, states, at)
    ]
    return _json({"subject": ref, "at": iso(at), "consents": consents})


async def read_events(request: Request) -> Response:
    """The subject's ledger in `seq` order, `limit` per page, with an opaque cursor to the next page."""
    services = services_of(request)
    ref = subject_ref(request.path_params["ref"])
    limit = bounded_int(request.query_params.get("limit"), "limit", 100, 1, 1000)
    after = seq_cursor(request.query_params.get("cursor"))
    subject = await _subject(ref)
    await _log_read(request, services, subject, "events_read")
    rows = await ConsentEvent.filter(subject_id=subject.id, seq__gt=after).order_by("seq").limit(limit + 1).values()
    catalog = await services.catalog.get()
    if any(r["policy_version_id"] not in catalog.policies_by_id for r in rows):
        catalog = await services.catalog.reload()
    events = [exported_event(row, subject.pseudonym, catalog) for row in rows[:limit]]
    next_cursor = f"s{rows[limit - 1]['seq']}" if len(rows) > limit else None
    headers = {}
    if next_cursor:
        path = f"/v1/subjects/{quote(ref, safe='')}/events"  # a URI: the ref percent-encoded, as in Location
        headers["Link"] = f'<{path}?limit={limit}&cursor={next_cursor}>; rel="next"'
    return _json({"subject": ref, "events": events, "next_cursor": next_cursor}, headers=headers)


async def _log_read(request: Request, services: Services, subject: Subject, action: str) -> None:
    """History reads are accountable too (GDPR 5(2)): who read whose records, when."""
    await log_access(
        at=services.clock(),
        actor_type="client",
        actor_id=request.state.access.client_id,
        action=action,
        subject_id=subject.id,
    )


async def _subject(ref: str) -> Subject:
    subject = await Subject.get_or_none(ref=ref)
    if subject is None:
        raise NotFound("no subject with this ref", parameter="ref")
    return subject


async def _event_rows(subject_id: Any) -> list[dict[str, Any]]:
    return (
        await ConsentEvent.filter(subject_id=subject_id)
        .order_by("seq")
        .values("id", "purpose_id", "channel_id", "status", "recorded_at", "valid_until", "policy_version_id")
    )
