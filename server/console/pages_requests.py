"""Console pages for data-subject requests: the queue (sorted by due date, overdue and due-soon flagged), one
request with its history, and every change: take, reassign, status, extension, carrying it out, and the two steps
of lifting a restriction. Each change is a history row and an access-log row."""

from __future__ import annotations

from datetime import date
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from server.console.web import Staff, audit, desk_of, forbidden, form_of, page, redirect
from server.dsr import effects
from server.dsr import requests as dsr
from server.dsr.deadlines import OPEN_STATUSES, received_on, urgency
from server.dsr.notices import send_notice
from server.dsr.requests import Actor
from server.errors import InvalidRequest, NotFound
from server.models import DataSubjectRequest, DsrHistory, StaffAccount, Subject
from server.staff.roles import AGENT_KINDS, may_handle, may_take

VIEWS = (("open", "Open"), ("mine", "Mine"), ("overdue", "Overdue"), ("closed", "Closed"))


def _id(request: Request) -> int:
    value = request.path_params["id"]
    if not value.isascii() or not value.isdigit() or len(value) > 9:
        raise NotFound("no request with this id", parameter="id")
    return int(value)


async def queue_page(request: Request, staff: Staff) -> Response:
    desk = desk_of(request)
    view = request.query_params.get("view", "open")
    if view not in dict(VIEWS):
        view = "open"
    statuses = ("done", "refused") if view == "closed" else OPEN_STATUSES
    items = await dsr.queue(
        desk.today(),
        desk.settings.dsr_reminder_days,
        statuses=statuses,
        owner_id=staff.id if view == "mine" else None,
    )
    if view == "overdue":
        items = [i for i in items if i.overdue]
    await audit(request, staff, "staff_view", what="request_queue", view=view)
    return page(
        request,
        "requests.html",
        me=staff,
        items=items,
        view=view,
        views=VIEWS,
        reminder_days=desk.settings.dsr_reminder_days,
        overdue=sum(1 for i in items if i.overdue),
        soon=sum(1 for i in items if i.reminder),
    )


async def _request_page(
    request: Request, staff: Staff, req: DataSubjectRequest, export_urls: dict[str, str] | None = None
) -> Response:
    desk = desk_of(request)
    subject = await Subject.get(id=req.subject_id)
    owner = await StaffAccount.get_or_none(id=req.owner_id) if req.owner_id else None
    accounts = await StaffAccount.all().order_by("name").values("id", "name", "role", "disabled_at")
    names = {f"staff:{a['id']}": f"{a['name']} ({a['role']})" for a in accounts}
    informed = (
        subject.restricted_at is not None
        and await DsrHistory.filter(
            request_id=req.id, action="customer_informed", at__gte=subject.restricted_at
        ).exists()
    )
    context: dict[str, Any] = {
        "r": req,
        "ref": subject.ref,
        "erased": subject.erased_at is not None,
        "restricted": subject.restricted_at is not None,
        "has_email": bool(subject.email),
        "owner_name": owner.name if owner else None,
        "flags": urgency(req.due_on, desk.today(), req.status, desk.settings.dsr_reminder_days),
        "open": req.status in OPEN_STATUSES,
        "can_handle": may_handle(staff.role, staff.id, req.kind, req.owner_id),
        "can_take": may_take(staff.role, req.kind, req.owner_id),
        "agent_kinds": AGENT_KINDS,
        "staff": [a for a in accounts if a["disabled_at"] is None and a["role"] in ("agent", "supervisor")],
        "history": await dsr.request_history(req.id),
        "names": names,
        "export_urls": export_urls,
        "export_days": max(1, desk.export_links.lifetime_s // 86400),
        "informed": informed,
        "today": desk.today(),
    }
    return page(request, "request.html", me=staff, **context)


async def request_page(request: Request, staff: Staff) -> Response:
    req = await dsr.get_request(_id(request))
    await audit(request, staff, "staff_view", req.subject_id, what="request", request_id=req.id)
    return await _request_page(request, staff, req)


async def _handled(request: Request, staff: Staff) -> DataSubjectRequest | Response:
    """The request, if this member of staff may work on it (agents: their own, of the kinds agents handle)."""
    req = await dsr.get_request(_id(request))
    if not may_handle(staff.role, staff.id, req.kind, req.owner_id):
        return forbidden(request, staff)
    return req


async def take(request: Request, staff: Staff) -> Response:
    desk = desk_of(request)
    req = await dsr.get_request(_id(request))
    if not may_take(staff.role, req.kind, req.owner_id):
        return forbidden(request, staff)
    await dsr.assign(req, staff.id, dsr.staff_actor(staff.id), desk.now())
    await audit(request, staff, "dsr_assign", req.subject_id, request_id=req.id, owner=staff.id)
    return redirect(f"/console/requests/{req.id}", request)


async def assign(request: Request, staff: Staff) -> Response:
    desk = desk_of(request)
    req = await dsr.get_request(_id(request))
    value = (await form_of(request)).get("owner", "")
    if value and not value.isdigit():
        raise InvalidRequest("owner must be a staff id", parameter="owner")
    owner = int(value) if value else None
    await dsr.assign(req, owner, dsr.staff_actor(staff.id), desk.now())
    await audit(request, staff, "dsr_assign", req.subject_id, request_id=req.id, owner=owner)
    return redirect(f"/console/requests/{req.id}", request)


async def set_status(request: Request, staff: Staff) -> Response:
    desk = desk_of(request)
    req = await _handled(request, staff)
    if isinstance(req, Response):
        return req
    form = await form_of(request)
    status, note = form.get("status", ""), form.get("note", "")
    actor = dsr.staff_actor(staff.id)
    await dsr.set_status(req, status, note, actor, desk.now())
    if status == "refused":
        # GDPR 12(4): the person is told why, and that they may complain to the supervisory authority.
        await _notify_person(request, req, "refusal", actor, reason=note.strip())
    await audit(request, staff, "dsr_status", req.subject_id, request_id=req.id, status=status)
    return redirect(f"/console/requests/{req.id}", request)


async def extend(request: Request, staff: Staff) -> Response:
    """GDPR 12(3): once, up to two months, with the reasons mailed to the person."""
    desk = desk_of(request)
    req = await dsr.get_request(_id(request))
    form = await form_of(request)
    months = form.get("months", "")
    if months not in ("1", "2"):
        raise InvalidRequest("an extension is 1 or 2 months", parameter="months")
    actor = dsr.staff_actor(staff.id)
    new_due = await dsr.extend(req, int(months), form.get("reason", ""), actor, desk.now(), desk.zone)
    await _notify_person(
        request, req, "extension", actor, due=new_due.isoformat(), reason=form.get("reason", "").strip()
    )
    await audit(request, staff, "dsr_extend", req.subject_id, request_id=req.id, due_on=new_due.isoformat())
    return redirect(f"/console/requests/{req.id}", request)


async def fulfil(request: Request, staff: Staff) -> Response:
    """Carry the request out (see `server.dsr.effects`); erasure and restriction need a supervisor."""
    desk = desk_of(request)
    req = await _handled(request, staff)
    if isinstance(req, Response):
        return req
    if req.status not in OPEN_STATUSES:
        raise InvalidRequest(f"the request is {req.status}; it can no longer change")
    form = await form_of(request)
    actor = dsr.staff_actor(staff.id)
    export_urls = None
    detail: dict[str, Any] = {}
    if req.kind in ("access", "portability"):
        export_urls = await effects.prepare_export(desk.context, req, actor)
        detail["export"] = "links issued"
    elif req.kind == "rectification":
        detail["fields"] = await effects.rectify(
            desk.context,
            req,
            actor,
            email=form.get("email", ""),
            phone=form.get("phone", ""),
            locale=form.get("locale", ""),
        )
    elif req.kind == "erasure":
        if form.get("confirm") != "yes":
            raise InvalidRequest("confirm that the identity was checked and no exemption applies", parameter="confirm")
        await effects.erase(desk.context, req, actor)
    elif req.kind == "restriction":
        await effects.restrict(desk.context, req, actor)
    elif req.kind == "objection":
        result = await effects.object_to_marketing(desk.context, req, actor)
        detail["events"] = len(result.events) if result else 0
    await audit(request, staff, "dsr_fulfil", req.subject_id, request_id=req.id, kind=req.kind, **detail)
    if export_urls is None:
        return redirect(f"/console/requests/{req.id}", request)
    # The download links are shown once, to hand over when the person has no email (they are also mailed).
    return await _request_page(request, staff, await dsr.get_request(req.id), export_urls)


async def restriction_notice(request: Request, staff: Staff) -> Response:
    desk = desk_of(request)
    req = await dsr.get_request(_id(request))
    form = await form_of(request)
    try:
        lift_on = date.fromisoformat(form.get("lift_on", ""))
    except ValueError:
        raise InvalidRequest("give the date the restriction will be lifted", parameter="lift_on") from None
    if lift_on < desk.today():
        raise InvalidRequest("the restriction is lifted after the customer is told, not before", parameter="lift_on")
    await effects.notify_lift(desk.context, req, dsr.staff_actor(staff.id), lift_on.isoformat(), form.get("reason", ""))
    await audit(request, staff, "dsr_restriction_notice", req.subject_id, request_id=req.id)
    return redirect(f"/console/requests/{req.id}", request)


async def restriction_lift(request: Request, staff: Staff) -> Response:
    desk = desk_of(request)
    req = await dsr.get_request(_id(request))
    await effects.lift(desk.context, req, dsr.staff_actor(staff.id))
    await audit(request, staff, "dsr_restriction_lift", req.subject_id, request_id=req.id)
    return redirect(f"/console/requests/{req.id}", request)


async def _notify_person(request: Request, req: DataSubjectRequest, notice: str, actor: Actor, **values: str) -> None:
    """Mail `notice` about `req` to its person (with the request's kind and date of receipt) and log it."""
    desk = desk_of(request)
    subject = await Subject.get(id=req.subject_id)
    # The day of receipt where the controller is, as the customer's page and the due date count it (not UTC).
    values.update(kind=req.kind, received=received_on(req.received_at, desk.zone).isoformat())
    await send_notice(desk.mailer, subject, req.id, notice, actor, desk.now(), desk.controller.email, **values)
