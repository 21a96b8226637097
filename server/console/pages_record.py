"""The record of processing activities (GDPR 30) in the console: the page, and the same as Markdown or JSON."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from server.console.web import HEADERS, Staff, audit, desk_of, page
from server.record.processing import build_record, render_markdown


async def record_page(request: Request, staff: Staff) -> Response:
    """`?format=md` or `?format=json` downloads it; otherwise the page, with what is not declared yet."""
    desk = desk_of(request)
    record = await build_record(desk.settings.policy_dir, desk.now())
    wanted = request.query_params.get("format", "html")
    await audit(request, staff, "staff_view", what="processing_record", format=wanted)
    if wanted == "json":
        return Response(
            orjson.dumps(record.as_json(), option=orjson.OPT_INDENT_2),
            media_type="application/json",
            headers={**HEADERS, "Content-Disposition": 'attachment; filename="record-of-processing.json"'},
        )
    if wanted == "md":
        return Response(
            render_markdown(record).encode(),
            media_type="text/markdown; charset=utf-8",
            headers={**HEADERS, "Content-Disposition": 'attachment; filename="record-of-processing.md"'},
        )
    return page(request, "processing_record.html", me=staff, r=record)
