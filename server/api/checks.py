"""The consent-check API: single, batch, NDJSON stream, and audience export."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from server.api.bodies import read_body
from server.api.params import instant
from server.consent.audience import export_allowed, export_changes
from server.consent.check import CONTROL_CHARACTERS, MAX_BATCH, CheckService, Question, validate_question
from server.consent.decide import Answer
from server.errors import ConsentError, InvalidRequest, MalformedBody, PayloadTooLarge
from server.services import Services

_OPTS = orjson.OPT_UTC_Z
BATCH_BODY_LIMIT = 8 * 1024 * 1024
STREAM_CHUNK = 1000
MAX_LINE = 64 * 1024


def _answer(answer: Answer) -> dict[str, Any]:
    return {
        "allowed": answer.allowed,
        "reason": answer.reason,
        "status": answer.status,
        "since": answer.since,
        "valid_until": answer.valid_until,
        "policy_version": answer.policy_version,
        "event_id": answer.event_id,
    }


def _error(error: ConsentError) -> dict[str, Any]:
    return {"type": f"/problems/{error.slug}", "title": error.title, "detail": error.detail}


def _checks(request: Request) -> CheckService:
    services: Services = request.app.state.services
    assert services.checks is not None
    return services.checks


async def check_one(request: Request) -> Response:
    """May we contact `subject` for `purpose` on `channel`? Default deny; `reason` says why."""
    checks = _checks(request)
    query = request.query_params
    catalog = await checks.catalog.get()
    question = validate_question(catalog, query.get("subject"), query.get("purpose"), query.get("channel"))
    at = instant(query.get("at"), "at")
    answer = await checks.check(question, at, catalog)
    return Response(orjson.dumps(_answer(answer), option=_OPTS), media_type="application/json")


async def check_batch(request: Request) -> Response:
    """Up to 10,000 checks in one body, answered in request order."""
    checks = _checks(request)
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise MalformedBody("expected Content-Type application/json")
    try:
        raw = await read_body(request, BATCH_BODY_LIMIT)
    except PayloadTooLarge as exc:
        raise PayloadTooLarge(f"{exc.detail}; a batch holds at most {MAX_BATCH} checks", limit=MAX_BATCH) from None
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedBody(f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict) or set(body) != {"checks"} or not isinstance(body["checks"], list):
        raise InvalidRequest('the body must be {"checks": [{"subject", "purpose", "channel"}, ...]}')
    items = body["checks"]
    if len(items) > MAX_BATCH:
        raise PayloadTooLarge(f"{len(items)} checks in one batch; the limit is {MAX_BATCH}", limit=MAX_BATCH)
    catalog = await checks.catalog.get()
    questions = [_question(catalog, item) for item in items]
    answers = await checks.check_many(questions)
    results = []
    for item, question, answer in zip(items, questions, answers, strict=True):
        if isinstance(answer, ConsentError):
            echo = {k: item.get(k) for k in ("subject", "purpose", "channel")} if isinstance(item, dict) else {}
            results.append({**echo, "error": _error(answer)})
        else:
            assert isinstance(question, Question)
            results.append(
                {
                    "subject": question.subject,
                    "purpose": question.purpose,
                    "channel": question.channel,
                    **_answer(answer),
                }
            )
    return Response(orjson.dumps({"results": results}, option=_OPTS), media_type="application/json")


def _question(catalog: Any, item: Any) -> Question | ConsentError:
    # Fast path for a well-formed item (the common case); anything else takes the path with precise errors.
    if type(item) is dict and len(item) == 3:
        subject, purpose, channel = item.get("subject"), item.get("purpose"), item.get("channel")
        if type(purpose) is str and type(channel) is str and type(subject) is str:
            info = catalog.purposes.get(purpose)
            if (
                info is not None
                and channel in info.channels
                and 0 < len(subject) <= 255
                and not CONTROL_CHARACTERS.search(subject)
            ):
                return Question(subject, purpose, channel)
    if not isinstance(item, dict) or set(item) != {"subject", "purpose", "channel"}:
        return InvalidRequest('each check is {"subject", "purpose", "channel"}, all three and nothing else')
    try:
        return validate_question(catalog, item.get("subject"), item.get("purpose"), item.get("channel"))
    except ConsentError as exc:
        return exc


async def check_stream(request: Request) -> Response:
    """NDJSON in, NDJSON out, in order; unbounded input in constant memory. A bad line gets an error line."""
    checks = _checks(request)

    async def lines() -> AsyncIterator[tuple[int, bytes | None]]:
        buffer = b""
        number = 0
        skipping = False
        async for chunk in request.stream():
            buffer += chunk
            if b"\n" not in buffer:
                if len(buffer) > MAX_LINE:
                    if not skipping:
                        number += 1
                        yield number, None  # line too long: reported once, skipped up to its newline
                    skipping, buffer = True, b""
                continue
            *complete, buffer = buffer.split(b"\n")
            for raw in complete:
                if skipping:
                    skipping = False
                    continue
                number += 1
                yield number, raw
        if buffer.strip() and not skipping:
            yield number + 1, buffer

    async def answers() -> AsyncIterator[bytes]:
        # Pipelined: chunk N's lookup runs while chunk N+1 is parsed; at most two chunks are held (constant memory).
        catalog = await checks.catalog.get()
        batch: list[tuple[int, Question | ConsentError]] = []
        pending: asyncio.Task[bytes] | None = None
        async for number, raw in lines():
            if raw is not None and not raw.strip():
                continue
            batch.append((number, _parse_line(catalog, raw)))
            if len(batch) >= STREAM_CHUNK:
                task = asyncio.ensure_future(_answer_lines(checks, batch))
                if pending is not None:
                    yield await pending
                pending, batch = task, []
        if pending is not None:
            yield await pending
        if batch:
            yield await _answer_lines(checks, batch)

    return DuplexStreamingResponse(answers(), media_type="application/x-ndjson")


class DuplexStreamingResponse(Response):
    """Streams answers while the request body is still arriving.

    Starlette's StreamingResponse also listens for a disconnect on `receive`, which would steal the body chunks this
    endpoint is still reading; here only the body iterator reads `receive`, and a disconnect ends the body.
    """

    def __init__(self, content: AsyncIterator[bytes], media_type: str) -> None:
        self.body_iterator = content
        self.status_code = 200
        self.media_type = media_type
        self.background = None
        self.init_headers(None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        try:
            async for chunk in self.body_iterator:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except ClientDisconnect:
            return
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _parse_line(catalog: Any, raw: bytes | None) -> Question | ConsentError:
    if raw is None:
        return InvalidRequest(f"line longer than {MAX_LINE} bytes")
    try:
        item = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return MalformedBody(f"not valid JSON: {exc}")
    return _question(catalog, item)


async def _answer_lines(checks: CheckService, batch: list[tuple[int, Question | ConsentError]]) -> bytes:
    answers = await checks.check_many([item for _, item in batch])
    out = []
    for (number, item), answer in zip(batch, answers, strict=True):
        if isinstance(answer, ConsentError):
            out.append(orjson.dumps({"line": number, "error": _error(answer)}))
        else:
            assert isinstance(item, Question)
            out.append(
                orjson.dumps(
                    {
                        "line": number,
                        "subject": item.subject,
                        "purpose": item.purpose,
                        "channel": item.channel,
                        **_answer(answer),
                    },
                    option=_OPTS,
                )
            )
    return b"\n".join(out) + b"\n"


async def audience(request: Request) -> Response:
    """Every subject ref currently allowed (NDJSON); with `?since=`, the changes after that instant."""
    checks = _checks(request)
    catalog = await checks.catalog.get()
    question = validate_question(catalog, "-", request.path_params["purpose"], request.path_params["channel"])
    since = instant(request.query_params.get("since"), "since")
    now = checks.clock()
    purpose = catalog.purposes[question.purpose]
    if since is None:
        body = export_allowed(checks.reader, catalog, purpose, question.channel, now)
    else:
        body = export_changes(checks.reader, catalog, purpose, question.channel, since, now)
    next_since = now.isoformat().replace("+00:00", "Z")
    return StreamingResponse(body, media_type="application/x-ndjson", headers={"X-Next-Since": next_since})
