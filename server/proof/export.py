"""The ledger export: every event recorded in a time range, as exported (hashed body, hash, log position), in
pages by (recorded_at, id), then one line with a signed checkpoint. Used by the API and the staff console."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import orjson

from server.models import ConsentEvent, LogEntry, Subject
from server.policies.catalog import Catalog
from server.proof.events import exported_event
from server.proof.log import SignedCheckpoint, TransparencyLog

PAGE = 2000


async def export_lines(
    catalog_source: Catalog,
    log: TransparencyLog,
    checkpoint: SignedCheckpoint,
    start: datetime | None = None,
    end: datetime | None = None,
) -> AsyncIterator[bytes]:
    catalog = await catalog_source.reload()
    pseudonyms: dict[str, str] = {}
    query = ConsentEvent.all()
    if start is not None:
        query = query.filter(recorded_at__gte=start)
    if end is not None:
        query = query.filter(recorded_at__lt=end)
    last: tuple[Any, str] | None = None
    while True:
        page = query
        if last is not None:
            page = page.filter(recorded_at__gte=last[0]).exclude(recorded_at=last[0], id__lte=last[1])
        rows = await page.order_by("recorded_at", "id").limit(PAGE).values()
        if not rows:
            break
        missing = list({str(r["subject_id"]) for r in rows} - set(pseudonyms))
        for subject in await Subject.filter(id__in=missing).values("id", "pseudonym"):
            pseudonyms[str(subject["id"])] = subject["pseudonym"]
        positions = {
            str(e["event_id"]): e["position"]
            for e in await LogEntry.filter(event_id__in=[r["id"] for r in rows]).values("event_id", "position")
        }
        out = []
        for row in rows:
            event = exported_event(row, pseudonyms[str(row["subject_id"])], catalog)
            event["log_position"] = positions.get(str(row["id"]))
            out.append(orjson.dumps(event))
        yield b"\n".join(out) + b"\n"
        last = (rows[-1]["recorded_at"], str(rows[-1]["id"]))
    yield orjson.dumps({"checkpoint": checkpoint.as_json()}) + b"\n"
