"""The consent-check API over HTTP: single, batch, NDJSON stream and audience feed (`CheckService` answers)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from server.consent.bulk import MAX_LINE, problem
from server.consent.check import MAX_BATCH, validate_question
from server.consent.decide import Answer
from server.consent.service import STREAM_CHUNK, CheckService
from server.consent.stream_workers import Segment
from server.db import send_again_error
from server.errors import InvalidRequest, MalformedBody, PayloadTooLarge
from server.kernel.bodies import read_body
from server.kernel.params import instant, query_values
from server.kernel.unstorable import refuse_in_json
from server.services import services_of

_OPTS = orjson.OPT_UTC_Z
log = logging.getLogger("server.consent")
BATCH_BODY_LIMIT = 8 * 1024 * 1024


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


def _checks(request: Request) -> CheckService:
    services = services_of(request)
    assert services.checks is not None
    return services.checks


async def check_one(request: Request) -> Response:
    """May we contact `subject` for `purpose` on `channel`? Default deny; `reason` says why."""
    checks = _checks(request)
    query = query_values(request.scope["query_string"])
    catalog = await checks.catalog.get()
    question = validate_question(catalog, query.get("subject"), query.get("purpose"), query.get("channel"))
    at = instant(query.get("at"), "at")
    answer = await checks.check(question, at, catalog)
    return Response(orjson.dumps(_answer(answer), option=_OPTS), media_type="application/json")


async def check_batch(request: Request) -> Response:
    """Up to 10,000 checks in one body, answered in request order (same rule as single checks: `BulkRule`)."""
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
    refuse_in_json(raw, body)
    if not isinstance(body, dict) or set(body) != {"checks"} or not isinstance(body["checks"], list):
        raise InvalidRequest('the body must be {"checks": [{"subject", "purpose", "channel"}, ...]}')
    return Response(await checks.batch(body["checks"]), media_type="application/json")


async def check_stream(request: Request) -> Response:
    """NDJSON in, NDJSON out, in order; unbounded input in constant memory. A bad line gets an error line."""
    checks = _checks(request)

    async def segments() -> AsyncIterator[Segment]:
        """The complete lines of each body chunk, joined by newlines, with the number of the first and the count;
        None for a line over MAX_LINE, however the body was cut into chunks (reported once, skipped up to its
        newline): the buffer never holds more than MAX_LINE bytes of an unfinished line."""
        buffer = b""
        number = 0
        skipping = False
        async for chunk in request.stream():
            buffer += chunk
            if b"\n" in buffer:
                *complete, buffer = buffer.split(b"\n")
                if skipping:
                    skipping = False
                    complete = complete[1:]  # the end of the long line, already reported
                for segment in _segments(complete, number + 1):
                    yield segment
                number += len(complete)
            if len(buffer) > MAX_LINE:
                if not skipping:
                    number += 1
                    yield number, None, 1
                skipping, buffer = True, b""
        if buffer.strip() and not skipping:
            yield number + 1, buffer, 1

    return DuplexStreamingResponse(_ended_by_error_line(checks.stream(segments())), media_type="application/x-ndjson")


async def _ended_by_error_line(body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """`body`, ended by one error line when the database or the disk fails midway (`send_again_error`: a lost
    connection, a database that refuses them): the status line (200) and the lines before went out already, so
    the answer cannot become a 503. The last line is then `{"error": {"type": "/problems/service-unavailable",
    ...}}`, without a `line` number: everything before it stands, what it did not answer is to be sent again.
    Any other failure aborts the response (the client sees a cut connection, never a short answer taken for a
    whole one)."""
    try:
        async for chunk in body:
            yield chunk
    except Exception as exc:
        domain = send_again_error(exc)
        if domain is None:
            raise
        log.warning("stream ended by %s: %r", domain.slug, exc)
        yield orjson.dumps({"error": problem(domain)}) + b"\n"


def _segments(lines: list[bytes], first: int) -> Iterator[Segment]:
    """`lines` (numbered from `first`) as segments of at most STREAM_CHUNK lines, each line over MAX_LINE alone as
    a segment without text (its error)."""
    if max(map(len, lines), default=0) <= MAX_LINE:  # the usual case, one pass in C
        for start in range(0, len(lines), STREAM_CHUNK):
            part = lines[start : start + STREAM_CHUNK]
            yield first + start, b"\n".join(part), len(part)
        return
    run = 0
    for index, line in enumerate(lines):
        if len(line) > MAX_LINE:
            yield from _segments(lines[run:index], first + run)
            yield first + index, None, 1
            run = index + 1
    yield from _segments(lines[run:], first + run)


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


async def audience(request: Request) -> Response:
    """Every subject ref currently allowed (NDJSON); with `?since=`, the changes after that instant. Either way the
    `X-Next-Since` header is the `since` of the next poll, unless the answer ends with an error line (the database
    was lost midway): then poll again with the same `since`."""
    checks = _checks(request)
    catalog = await checks.catalog.get()
    question = validate_question(catalog, "-", request.path_params["purpose"], request.path_params["channel"])
    since = instant(request.query_params.get("since"), "since")
    body, next_since = checks.audience(catalog, question, since)
    headers = {"X-Next-Since": next_since.isoformat().replace("+00:00", "Z")}
    return StreamingResponse(_ended_by_error_line(body), media_type="application/x-ndjson", headers=headers)
