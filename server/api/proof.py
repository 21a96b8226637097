"""Proof endpoints: checkpoints and Merkle proofs of the transparency log, subject proof bundles, receipts,
and the ledger export. Reads of personal records are written to the access log."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from server.accesslog import log_access
from server.errors import InvalidRequest, NotFound
from server.kernel.params import bounded_int, instant, subject_ref
from server.models import LogEntry, Receipt, Subject
from server.proof.bundle import Scope, build_bundle
from server.proof.export import export_lines
from server.services import services_of


def _json(data: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data, option=orjson.OPT_UTC_Z), media_type="application/json", headers=headers)


def _actor(request: Request) -> tuple[str, str]:
    return "client", request.state.access.client_id


async def latest_checkpoint(request: Request) -> Response:
    """The newest signed checkpoint (sequencing what is queued first)."""
    services = services_of(request)
    checkpoint = await services.log.checkpoint()
    return _json(checkpoint.as_json(), {"Cache-Control": "no-cache"})


async def checkpoint_at(request: Request) -> Response:
    """A past checkpoint, by tree size."""
    services = services_of(request)
    size = bounded_int(request.path_params["size"], "size", 0, 0, 10**15)
    checkpoint = await services.log.at_size(size)
    if checkpoint is None:
        raise NotFound(f"no checkpoint of size {size}")
    headers = {"Cache-Control": "public, max-age=31536000, immutable"}
    return _json(checkpoint.as_json(), headers)


async def inclusion_proof(request: Request) -> Response:
    """RFC 9162 audit path of one event to a checkpoint (default: the latest)."""
    services = services_of(request)
    event_id = request.query_params.get("event_id", "")
    entry = await LogEntry.get_or_none(event_id=event_id) if _is_uuid(event_id) else None
    if entry is None:
        raise NotFound("no logged event with this id (events are sequenced within seconds)")
    size_param = request.query_params.get("tree_size")
    checkpoint = (
        await services.log.at_size(bounded_int(size_param, "tree_size", 0, 0, 10**15))
        if size_param
        else await services.log.checkpoint()
    )
    if checkpoint is None or checkpoint.tree_size <= entry.position:
        raise InvalidRequest("no checkpoint of that size covers this event", parameter="tree_size")
    paths = await services.log.inclusion([entry.position], checkpoint.tree_size)
    return _json(
        {
            "event_id": event_id,
            "log_position": entry.position,
            "leaf_hash": entry.leaf_hash,
            "tree_size": checkpoint.tree_size,
            "root_hash": checkpoint.root_hash,
            "path": [node.hex() for node in paths[entry.position]],
        }
    )


async def consistency_proof(request: Request) -> Response:
    """RFC 9162 consistency proof between two published checkpoints."""
    services = services_of(request)
    old = bounded_int(request.query_params.get("from"), "from", 0, 0, 10**15)
    new = bounded_int(request.query_params.get("to"), "to", 0, 0, 10**15)
    first, second = await services.log.at_size(old), await services.log.at_size(new)
    if first is None or second is None or old > new:
        raise InvalidRequest("from and to must be sizes of published checkpoints, from <= to")
    proof = await services.log.consistency(old, new)
    return _json(
        {
            "from": first.as_json(),
            "to": second.as_json(),
            "proof": [node.hex() for node in proof],
        }
    )


async def subject_proof(request: Request) -> Response:
    """The subject's proof bundle (zip), optionally narrowed to a purpose, channel and time range."""
    services = services_of(request)
    ref = subject_ref(request.path_params["ref"])
    query = request.query_params
    catalog = await services.catalog.get()
    purpose, channel = query.get("purpose"), query.get("channel")
    if purpose is not None and purpose not in catalog.purposes:
        raise InvalidRequest(f"unknown purpose {purpose[:64]!r}", parameter="purpose")
    if channel is not None and channel not in catalog.channels:
        raise InvalidRequest(f"unknown channel {channel[:64]!r}", parameter="channel")
    scope = Scope(purpose, channel, *_time_range(request))
    bundle_id, data = await build_bundle(services.bundles, ref, scope, _actor(request))
    return Response(
        data,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="consent-proof-{bundle_id}.zip"'},
    )


async def subject_receipts(request: Request) -> Response:
    """The signed receipts of the subject's decisions, newest first."""
    services = services_of(request)
    ref = subject_ref(request.path_params["ref"])
    subject = await Subject.get_or_none(ref=ref)
    if subject is None:
        raise NotFound("no subject with this ref", parameter="ref")
    await log_access(
        at=services.clock(),
        actor_type="client",
        actor_id=_actor(request)[1],
        action="receipts_read",
        subject_id=subject.id,
    )
    rows = await Receipt.filter(subject_id=subject.id).order_by("-created_at").limit(1000)
    return _json(
        {
            "subject": ref,
            "receipts": [
                {"id": str(r.id), "event_ids": r.event_ids, "receipt": r.jws, "created_at": r.created_at} for r in rows
            ],
        }
    )


async def ledger_export(request: Request) -> Response:
    """NDJSON of every event recorded in [from, to), streamed, then a line with a signed checkpoint."""
    services = services_of(request)
    start, end = _time_range(request)
    await log_access(
        at=services.clock(),
        actor_type="client",
        actor_id=_actor(request)[1],
        action="ledger_export",
        detail={"from": request.query_params.get("from"), "to": request.query_params.get("to")},
    )
    checkpoint = await services.log.checkpoint()

    return StreamingResponse(
        export_lines(services.catalog, services.log, checkpoint, start, end), media_type="application/x-ndjson"
    )


def _time_range(request: Request) -> tuple[datetime | None, datetime | None]:
    """`?from=` and `?to=`, the range [from, to): a `to` not after `from` is refused, not answered with nothing."""
    start = instant(request.query_params.get("from"), "from")
    end = instant(request.query_params.get("to"), "to")
    if start is not None and end is not None and end <= start:
        raise InvalidRequest("'to' must be after 'from' (the range is [from, to))", parameter="to")
    return start, end


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
