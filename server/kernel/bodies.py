"""Reading request bodies with a size limit and strict validation; every failure is a domain error."""

from __future__ import annotations

from typing import TypeVar
from urllib.parse import parse_qsl

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from server.errors import InvalidRequest, MalformedBody, PayloadTooLarge
from server.kernel.unstorable import refuse_in_form, refuse_in_json

Model = TypeVar("Model", bound=BaseModel)


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is {declared} bytes; the limit is {limit} bytes", limit=limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body is over the limit of {limit} bytes", limit=limit)
        chunks.append(chunk)
    return b"".join(chunks)


def body_limit(request: Request) -> int:
    """MAX_BODY_BYTES, which the app factory puts in the app's state."""
    limit: int = request.app.state.max_body_bytes
    return limit


async def read_json(request: Request, model: type[Model]) -> Model:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise MalformedBody(f"expected Content-Type application/json, got {content_type or 'none'!r}")
    raw = await read_body(request, body_limit(request))
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedBody(f"the body is not valid JSON: {exc}") from None
    refuse_in_json(raw, data)
    return validate(model, data)


def validate(model: type[Model], data: object) -> Model:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequest(
            "the body does not match the schema",
            errors=[
                {"location": "/".join(str(p) for p in error["loc"]), "message": error["msg"]}
                for error in exc.errors(include_url=False, include_input=False)
            ],
        ) from None


async def read_form(request: Request, limit: int = 64 * 1024) -> dict[str, str]:
    """An `application/x-www-form-urlencoded` body of at most `limit` bytes as a dict (repeated keys: the last
    wins)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise MalformedBody(f"expected Content-Type application/x-www-form-urlencoded, got {content_type!r}")
    raw = await read_body(request, limit)
    try:
        fields = dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False))
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedBody(f"the form body is not valid: {exc}") from None
    refuse_in_form(fields)
    return fields
