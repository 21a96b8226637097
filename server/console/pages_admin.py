"""Console pages for approved answers (everyone), the audit log (auditors, admins), staff accounts and the whole
ledger export (admins)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from server.console.web import Staff, audit, desk_of, form_of, page, redirect, staff_names
from server.db import column_length
from server.errors import InvalidRequest, NotFound
from server.models import AccessLog, StaffAccount, Subject
from server.proof.export import export_lines
from server.staff import accounts
from server.staff.roles import ROLES

PAGE = 200


async def answers_page(request: Request, staff: Staff) -> Response:
    desk = desk_of(request)
    q = request.query_params.get("q", "")[:200]
    lang = request.query_params.get("lang", "")
    lang = lang if lang in ("fr", "en") else ""
    found = desk.answers.search(q, lang or None)
    values = _values(request)
    rendered = {(a.id, a.lang): Markup(a.html(values)) for a in found}  # noqa: S704 (Markdown with HTML disabled)
    return page(request, "answers.html", me=staff, q=q, lang=lang, answers=found, rendered=rendered)


def _values(request: Request) -> dict[str, str]:
    """Placeholders of answers that are not scripts (scripts are filled in on the customer page)."""
    desk = desk_of(request)
    return {
        "controller": desk.controller.name,
        "dpo_email": desk.controller.email,
        "purpose": "{purpose}",
        "channel": "{channel}",
        "policy_title": "{policy_title}",
        "policy_version": "{policy_version}",
        "policy_url": "{policy_url}",
    }


async def answer_page(request: Request, staff: Staff) -> Response:
    desk = desk_of(request)
    lang = request.query_params.get("lang", "fr")
    answer = desk.answers.get(request.path_params["id"], lang if lang in ("fr", "en") else "fr")
    if answer is None:
        raise NotFound("no approved answer with this id", parameter="id")
    other = desk.answers.get(answer.id, "en" if answer.lang == "fr" else "fr")
    body = Markup(answer.html(_values(request)))  # noqa: S704 (Markdown with HTML disabled)
    return page(request, "answer.html", me=staff, answer=answer, other=other, body=body)


async def audit_page(request: Request, staff: Staff) -> Response:
    """The access log, newest first, filtered by actor, customer or action."""
    params = request.query_params
    filters = {k: params.get(k, "")[:128] for k in ("actor_type", "actor_id", "ref", "action")}
    for name in ("actor_type", "action"):
        if len(filters[name]) > (limit := column_length(AccessLog, name)):
            raise InvalidRequest(f"{name} is at most {limit} characters", parameter=name)
    query = AccessLog.all()
    if filters["actor_type"]:
        query = query.filter(actor_type=filters["actor_type"])
    if filters["actor_id"]:
        query = query.filter(actor_id=filters["actor_id"])
    if filters["action"]:
        query = query.filter(action=filters["action"])
    if filters["ref"]:
        subject = await Subject.get_or_none(ref=filters["ref"])
        query = query.filter(subject_id=subject.id if subject else None, subject_id__isnull=False)
    before = params.get("before", "")
    if before.isdigit():
        query = query.filter(id__lt=int(before))
    entries = (
        await query.order_by("-id")
        .limit(PAGE)
        .values("id", "at", "actor_type", "actor_id", "action", "detail", "subject__ref")
    )
    names = await staff_names()
    next_before = entries[-1]["id"] if len(entries) == PAGE else None
    next_query = urlencode({**{k: v for k, v in filters.items() if v}, "before": next_before or ""})
    await audit(request, staff, "staff_view", what="audit_log")
    return page(
        request,
        "audit.html",
        me=staff,
        entries=entries,
        filters=filters,
        names=names,
        next_before=next_before,
        next_query=next_query,
    )


async def _staff_page(request: Request, staff: Staff, **extra: Any) -> Response:
    accounts_ = await StaffAccount.all().order_by("name")
    return page(request, "staff.html", me=staff, accounts=accounts_, roles=ROLES, **extra)


async def staff_page(request: Request, staff: Staff) -> Response:
    return await _staff_page(request, staff, created=None, password=None)


async def staff_create(request: Request, staff: Staff) -> Response:
    """A local account with a generated password, shown once to the admin (who hands it over)."""
    form = await form_of(request)
    new = await accounts.create_staff(form.get("email", ""), form.get("name", ""), form.get("role", ""))
    await audit(request, staff, "staff_account", created=new.account.id, role=new.account.role)
    return await _staff_page(request, staff, created=new.account, password=new.password)


async def staff_update(request: Request, staff: Staff) -> Response:
    """Change an account's role, disable or enable it (either ends its sessions)."""
    desk = desk_of(request)
    value = request.path_params["id"]
    account = await StaffAccount.get_or_none(id=int(value)) if value.isdigit() and len(value) < 10 else None
    if account is None:
        raise NotFound("no staff account with this id", parameter="id")
    if account.id == staff.id:
        raise InvalidRequest("you cannot change your own account: ask another admin")
    form = await form_of(request)
    role = form.get("role", account.role)
    if role != account.role:
        await accounts.set_role(account.id, role)
        await accounts.end_sessions(account.id)
    disabled = form.get("disabled") == "1"
    if disabled != (account.disabled_at is not None):
        await accounts.set_disabled(account.id, desk.now() if disabled else None)
    await audit(request, staff, "staff_account", updated=account.id, role=role, disabled=disabled)
    return redirect("/console/staff", request)


async def ledger_export(request: Request, staff: Staff) -> Response:
    """Every event of the whole ledger as NDJSON (pseudonymous, as hashed), then a signed checkpoint."""
    desk = desk_of(request)
    services = desk.services
    await audit(request, staff, "ledger_export")
    checkpoint = await services.log.checkpoint()

    return StreamingResponse(
        export_lines(services.catalog, services.log, checkpoint),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": 'attachment; filename="ledger.ndjson"', "Cache-Control": "no-store"},
    )
