"""Console pages of the breach register (GDPR 33 and 34): the register with each breach's 72-hour clock, one breach
with its trail, every step, the notification's content for the supervisory authority and the people concerned,
and the whole register as JSON for auditors. Each view and change is an access-log row."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from server.breaches import register as breaches
from server.console.guard import StaffHandler
from server.console.web import HEADERS, Staff, audit, desk_of, form_of, page, redirect, staff_names
from server.errors import NotFound


def _id(request: Request) -> int:
    value = request.path_params["id"]
    if not value.isascii() or not value.isdigit() or len(value) > 9:
        raise NotFound("no breach with this id", parameter="id")
    return int(value)


def _actor(staff: Staff) -> str:
    return f"staff:{staff.id}"


async def register_page(request: Request, staff: Staff) -> Response:
    desk = desk_of(request)
    rows = await breaches.register(desk.now())
    await audit(request, staff, "staff_view", what="breach_register")
    return page(
        request,
        "breaches.html",
        me=staff,
        rows=rows,
        kinds=breaches.KINDS,
        risks=breaches.RISKS,
        zone=desk.zone,
        now_local=desk.now().astimezone(desk.zone).strftime("%Y-%m-%dT%H:%M"),
        overdue=sum(1 for _, d in rows if d.state == "overdue"),
        running=sum(1 for _, d in rows if d.state == "due"),
        inform=sum(1 for b, d in rows if d.inform_people and b.closed_at is None),
    )


async def record(request: Request, staff: Staff) -> Response:
    desk = desk_of(request)
    now = desk.now()
    facts = breaches.facts_from(await form_of(request), desk.zone, now)
    breach = await breaches.record(facts, _actor(staff), now)
    await audit(request, staff, "staff_record_breach", breach_id=breach.id)
    return redirect(f"/console/breaches/{breach.id}?done=recorded", request)


async def _breach_page(request: Request, staff: Staff, breach_id: int) -> Response:
    desk = desk_of(request)
    breach = await breaches.get_breach(breach_id)
    return page(
        request,
        "breach.html",
        me=staff,
        flash=DONE.get(request.query_params.get("done", "")),
        b=breach,
        d=breaches.deadline(breach, desk.now()),
        kinds=breaches.KINDS,
        risks=breaches.RISKS,
        labels=breaches.FACT_LABELS,
        zone=desk.zone,
        trail=await breaches.trail(breach.id),
        names=await staff_names(),
        local=lambda value: value.astimezone(desk.zone).strftime("%Y-%m-%dT%H:%M") if value else "",
        now_local=desk.now().astimezone(desk.zone).strftime("%Y-%m-%dT%H:%M"),
    )


async def breach_page(request: Request, staff: Staff) -> Response:
    breach_id = _id(request)
    response = await _breach_page(request, staff, breach_id)
    await audit(request, staff, "staff_view", what="breach", breach_id=breach_id)
    return response


DONE = {
    "recorded": "The breach is in the register. Its 72 hours run from when you became aware of it.",
    "update": "The breach was updated.",
    "notified": "The notification to the supervisory authority was recorded.",
    "told": "The communication to the people concerned was recorded.",
    "note": "The note was added.",
    "close": "The breach was closed.",
    "reopen": "The breach was reopened.",
}


async def _step(request: Request, staff: Staff, action: str) -> Response:
    """Run one step on the breach from its form, then back to the breach's page, which says it was done."""
    desk = desk_of(request)
    breach_id = _id(request)
    form = await form_of(request)
    version = breaches.version_from(form)
    now = desk.now()
    actor = _actor(staff)
    note = breaches.text_field(form, "note")  # checked like every text: no control character, no silent cut
    if action == "update":
        await breaches.update(breach_id, version, breaches.facts_from(form, desk.zone, now), note, actor, now)
    elif action == "notified":
        await breaches.notify_authority(breach_id, version, form, desk.zone, actor, now)
    elif action == "told":
        await breaches.people_told(breach_id, version, form, desk.zone, actor, now)
    elif action == "note":
        await breaches.add_note(breach_id, version, note, actor, now)
    elif action == "close":
        await breaches.close(breach_id, version, note, actor, now)
    else:
        await breaches.reopen(breach_id, version, note, actor, now)
    await audit(request, staff, f"staff_breach_{action}", breach_id=breach_id)
    return redirect(f"/console/breaches/{breach_id}?done={action}", request)


def _step_route(action: str, summary: str) -> StaffHandler:
    """The handler of one step: `_step` for `action`."""

    async def handle(request: Request, staff: Staff) -> Response:
        return await _step(request, staff, action)

    handle.__name__ = handle.__qualname__ = action
    handle.__doc__ = summary
    return handle


update = _step_route("update", "New facts or a new assessment.")
notified = _step_route("notified", "The notification to the supervisory authority (GDPR 33).")
told = _step_route("told", "The communication to the people concerned, or why none (GDPR 34).")
note = _step_route("note", "A note, such as further information sent to the authority (33(4)).")
close = _step_route("close", "Close the breach once every duty is done.")
reopen = _step_route("reopen", "Reopen a closed breach, with the reason.")


async def notification(request: Request, staff: Staff) -> Response:
    """The content of the notification to the supervisory authority (GDPR 33(3)) and of the communication to the
    people concerned (34(2)), from the register's facts, as a Markdown document to paste or attach."""
    desk = desk_of(request)
    breach = await breaches.get_breach(_id(request))
    text = desk.render(
        "breach_notification.md",
        b=breach,
        d=breaches.deadline(breach, desk.now()),
        kinds=breaches.KINDS,
        zone=desk.zone,
        generated_at=desk.now(),
    )
    await audit(request, staff, "staff_breach_notification", breach_id=breach.id)
    return Response(
        text.encode(),
        media_type="text/markdown; charset=utf-8",
        headers={**HEADERS, "Content-Disposition": f'attachment; filename="breach-{breach.id}-notification.md"'},
    )


async def export(request: Request, staff: Staff) -> Response:
    """The whole register with every trail row (GDPR 33(5): documentation the authority may check)."""
    desk = desk_of(request)
    now = desk.now()
    items: list[dict[str, Any]] = []
    for breach, state in await breaches.register(now):
        entries = await breaches.trail(breach.id)
        items.append(
            {
                **breaches.as_json(breach),
                "notify_by": breaches.shown(state.notify_by),
                "state": state.state,
                "late": state.late,
                "trail": [
                    {
                        "at": breaches.shown(e.at),
                        "actor": e.actor,
                        "action": e.action,
                        "changes": e.changes,
                        "note": e.note,
                    }
                    for e in entries
                ],
            }
        )
    body = {"controller": desk.controller.name, "generated_at": breaches.shown(now), "breaches": items}
    await audit(request, staff, "staff_breach_export", breaches=len(items))
    return Response(
        orjson.dumps(body, option=orjson.OPT_INDENT_2),
        media_type="application/json",
        headers={**HEADERS, "Content-Disposition": 'attachment; filename="breach-register.json"'},
    )
