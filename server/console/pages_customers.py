"""Console pages about one customer: search, consent matrix and timeline, recording a decision on their behalf
(touchpoint `agent`, the script read stored as the UI snapshot), a preference-center link, the proof bundle, and
opening a data-subject request. Every view and change writes an access-log row (actor_type "staff")."""

from __future__ import annotations

import re
from datetime import date
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from server.console import customers
from server.console.customers import AGENT_ACTIONS, AGENT_METHODS
from server.console.pages_notices import notices_of
from server.console.web import Staff, audit, desk_of, form_of, is_htmx, page, redirect
from server.dsr import requests as dsr
from server.dsr.deadlines import STATUSES
from server.errors import InvalidRequest, NotFound, SubjectErased
from server.kernel.params import subject_ref
from server.ledger.append import Decision, RecordRequest, Snapshot
from server.models import ConsentEvent, StaffAccount, Subject, UISnapshot
from server.policies.snapshot import FALLBACK_LANGUAGE, PRIVACY_POLICY
from server.proof.bundle import Scope, build_bundle
from server.staff.roles import may_handle

# What the agent is told when a decision waits for the customer's double opt-in click (`OptIn.confirm_pending`).
PENDING_NOTES = {
    "sent": "The confirmation email went to the address on file: the consent counts once the customer clicks its link.",
    "no_email": "There is no email address on file, so no confirmation email left: the consent does not count until "
    "it is confirmed.",
    "suppressed": "No confirmation email was sent: the address on file belongs to a person whose data was erased.",
    "restricted": "No confirmation email was sent: processing of this customer's data is restricted (GDPR 18).",
    "rate_limited": "No confirmation email was sent: this customer was sent several in the last minutes.",
    "not_sent": "The confirmation email could not be sent: the customer can ask for it again from the preference "
    "center.",
}


def _ref(request: Request) -> str:
    return subject_ref(request.path_params["ref"])  # in NFC, as every surface stores and finds refs


async def home(request: Request, staff: Staff) -> Response:
    desk = desk_of(request)
    mine = None
    if staff.can("request.handle"):
        mine = await dsr.queue(desk.today(), desk.settings.dsr_reminder_days, owner_id=staff.id)
    return page(request, "home.html", me=staff, q="", results=[], mine=mine)


async def search(request: Request, staff: Staff) -> Response:
    """Search-as-you-type: a fragment for htmx, the whole page otherwise. The log names the kind of query only."""
    query = request.query_params.get("q", "")[:320]
    results = await customers.search(query)
    if len(query.strip()) >= 2:
        await audit(request, staff, "staff_search", query_kind=customers.query_kind(query), results=len(results))
    if is_htmx(request):
        return page(request, "_search_results.html", me=staff, q=query, results=results)
    return page(request, "home.html", me=staff, q=query, results=results, mine=None)


async def _customer_context(request: Request, staff: Staff, subject: Subject, exists: bool) -> dict[str, Any]:
    desk = desk_of(request)
    catalog = await desk.services.catalog.get()
    lang = subject.locale or "fr"
    rows = await customers.matrix(desk, subject.ref, "en")
    events = await customers.timeline(subject, catalog) if exists else []
    names = {str(a["id"]): a["name"] for a in await StaffAccount.all().values("id", "name")}
    return {
        "notices": await notices_of(subject) if exists else [],
        "rows": rows,
        "events": events,
        "subject": subject,
        "exists": exists,
        "catalog": catalog,
        "lang": lang,
        "staff_names": names,
    }


async def _form_defaults(request: Request, context: dict[str, Any], form: dict[str, str]) -> dict[str, Any]:
    """The record form's values, and the script they lead to (or the reason there is none)."""
    desk = desk_of(request)
    catalog = context["catalog"]
    policies = customers.policy_choices(catalog, desk.now())
    current = catalog.in_force(PRIVACY_POLICY, context["lang"], desk.now())
    if current is None:
        raise NotFound("no published version of the privacy policy is in force", parameter="policy")
    rows = context["rows"]
    values = {
        "target": form.get("target") or (f"{rows[0].purpose}:{rows[0].channel}" if rows else ""),
        "action": form.get("action") or "grant",
        "policy": form.get("policy") or current.label,
        "method": form.get("method") or "phone_call",
        "reference": form.get("reference", ""),
    }
    script, error = None, None
    try:
        script = _script(desk, catalog, values)
    except (InvalidRequest, NotFound) as exc:
        error = exc.detail
    return {"form": values, "policies": policies, "script": script, "script_error": error}


def _script(desk: Any, catalog: Any, values: dict[str, str]) -> Snapshot:
    purpose, _, channel = values["target"].partition(":")
    policy = catalog.policies.get(values["policy"])
    if policy is None or policy.document != "privacy-policy":
        raise InvalidRequest("choose a published version of the privacy policy", parameter="policy")
    return customers.script_for(
        desk, catalog, purpose=purpose, channel=channel, action=values["action"], policy=policy, lang=policy.lang
    )


async def customer_page(request: Request, staff: Staff) -> Response:
    desk = desk_of(request)
    ref = _ref(request)
    subject = await Subject.get_or_none(ref=ref)
    exists = subject is not None
    if subject is None:
        if not staff.can("consent.record"):
            raise NotFound("no customer with this ref", parameter="ref")
        subject = Subject(ref=ref, pseudonym="(created with the first decision)")
    context = await _customer_context(request, staff, subject, exists)
    requests = (
        await dsr.queue(desk.today(), desk.settings.dsr_reminder_days, statuses=STATUSES, subject_id=subject.id)
        if exists
        else []
    )
    if exists:
        await audit(request, staff, "staff_view", subject.id, what="customer")
    flashes = {
        "recorded": "Decision recorded.",
        "opened": "Request opened.",
        **{f"recorded_{mail}": f"Decision recorded. {note}" for mail, note in PENDING_NOTES.items()},
    }
    flash = flashes.get(request.query_params.get("done", ""))
    return page(
        request,
        "customer.html",
        me=staff,
        flash=flash,
        requests=requests,
        actions=AGENT_ACTIONS,
        methods=AGENT_METHODS,
        today=desk.today(),
        earliest=dsr.earliest_received(desk.today()),
        **context,
        **await _form_defaults(request, context, {}),
    )


async def script_preview(request: Request, staff: Staff) -> Response:
    """The script for the decision being prepared (htmx swaps it in as the agent changes the form)."""
    desk = desk_of(request)
    catalog = await desk.services.catalog.get()
    values = {k: request.query_params.get(k, "") for k in ("target", "action", "policy")}
    try:
        return page(request, "_script.html", script=_script(desk, catalog, values), script_error=None)
    except (InvalidRequest, NotFound) as exc:
        return page(request, "_script.html", script=None, script_error=exc.detail)


async def record(request: Request, staff: Staff) -> Response:
    """Record one decision given by phone, ticket, in person or letter, through `Ledger.record` only."""
    desk = desk_of(request)
    ref = _ref(request)
    form = await form_of(request)
    subject = await Subject.get_or_none(ref=ref)
    if subject is not None and subject.erased_at is not None:
        raise SubjectErased("this customer's data was erased (GDPR 17): nothing can be recorded for them")
    reference = form.get("reference", "").strip()
    if not reference or len(reference) > 128:
        raise InvalidRequest("give the call or ticket reference (1-128 characters)", parameter="reference")
    method = form.get("method", "")
    if method not in AGENT_METHODS:
        raise InvalidRequest(f"method must be one of {', '.join(AGENT_METHODS)}", parameter="method")
    catalog = await desk.services.catalog.get()
    values = {k: form.get(k, "") for k in ("target", "action", "policy")}
    script = _script(desk, catalog, values)
    if form.get("script_sha256") != script.sha256:
        raise InvalidRequest("the script changed: read the script now shown to the customer, then record again")
    purpose, _, channel = values["target"].partition(":")
    recorded = await desk.services.optin.record(
        RecordRequest(
            ref=ref,
            policy=values["policy"],
            decisions=[Decision(purpose, channel, values["action"])],
            touchpoint="agent",
            method=method,
            actor_type="agent",
            actor_id=staff.actor_id,
            evidence={"reference": reference},
            snapshot=script,
        )
    )
    result = recorded.result
    subject = await Subject.get(ref=ref)
    event = result.events[0]
    await audit(request, staff, "staff_record", subject.id, event_id=event.id, seq=event.seq, reference=reference[:64])
    # A consent given by phone to a double opt-in purpose by email still needs the customer's click (GDPR 7(1)).
    mail = recorded.confirmations[0]["mail"] if recorded.confirmations else ""
    if not is_htmx(request):
        return redirect(f"/console/customers/{_quoted(ref)}?done=recorded{'_' + mail if mail else ''}")
    context = await _customer_context(request, staff, subject, True)
    message = f"Recorded: {purpose}/{channel} {values['action']} → {event.status} (event {event.seq})."
    if mail:
        message += " " + PENDING_NOTES[mail]
    return page(request, "_record_result.html", me=staff, kind="ok", message=message, **context)


def _quoted(ref: str) -> str:
    return quote(ref, safe="")


async def send_link(request: Request, staff: Staff) -> Response:
    """Mail the customer a link to their preference center."""
    desk = desk_of(request)
    subject = await customers.get_subject(_ref(request))
    if subject.erased_at is not None or not subject.email:
        raise InvalidRequest("there is no email address on file for this customer")
    await desk.services.optin.send_preferences_link(
        ref=subject.ref, email=subject.email, lang=subject.locale or FALLBACK_LANGUAGE
    )
    await audit(request, staff, "staff_send_link", subject.id)
    message = "A link to the preference center was emailed to the address on file."
    if is_htmx(request):
        return page(request, "_flash.html", kind="ok", message=message)
    return redirect(f"/console/customers/{_quoted(subject.ref)}")


async def proof_bundle(request: Request, staff: Staff) -> Response:
    """The subject's proof bundle (zip), generated with the actor ("staff", id): it lists its own generation."""
    desk = desk_of(request)
    subject = await customers.get_subject(_ref(request))
    bundle_id, data = await build_bundle(desk.services.bundles, subject.ref, Scope(), ("staff", staff.actor_id))
    return Response(
        data,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="proof-{bundle_id}.zip"', "Cache-Control": "no-store"},
    )


async def snapshot_page(request: Request, staff: Staff) -> Response:
    """A UI snapshot cited by one of this customer's events, shown as escaped text."""
    subject = await customers.get_subject(_ref(request))
    sha = request.path_params["sha256"]
    if not re.fullmatch("[0-9a-f]{64}", sha):  # anything else is no snapshot (and too long for the column)
        raise NotFound("no snapshot with this hash among this customer's events", parameter="sha256")
    seqs = (
        await ConsentEvent.filter(subject_id=subject.id, ui_snapshot_sha256=sha)
        .order_by("seq")
        .values_list("seq", flat=True)
    )
    snapshot = await UISnapshot.get_or_none(sha256=sha) if seqs else None
    if snapshot is None:
        raise NotFound("no snapshot with this hash among this customer's events", parameter="sha256")
    await audit(request, staff, "staff_view", subject.id, what="ui_snapshot", sha256=sha)
    return page(request, "snapshot.html", me=staff, snapshot=snapshot, seqs=seqs, ref=subject.ref)


async def open_request(request: Request, staff: Staff) -> Response:
    """Open a request on the customer's behalf; an objection to direct marketing takes effect at once."""
    desk = desk_of(request)
    ref = _ref(request)
    form = await form_of(request)
    kind = form.get("kind", "")
    received = None
    if form.get("received_on"):
        try:
            received = date.fromisoformat(form["received_on"])
        except ValueError:
            raise InvalidRequest("the received date is not a date", parameter="received_on") from None
    owner = staff.id if form.get("assign_me") or kind == "objection" else None
    if owner is not None and not may_handle(staff.role, staff.id, kind, staff.id):
        owner = None
    actor = dsr.staff_actor(staff.id)
    created = await desk.requests.open_request(
        ref, kind, "agent", form.get("details", ""), actor=actor, received=received, owner_id=owner
    )
    await audit(request, staff, "dsr_open", created.subject_id, request_id=created.id, kind=kind)
    if kind == "objection" and owner is not None:
        if not await desk.requests.object_now(created, actor, touchpoint="agent"):
            # Left open, assigned to this agent, whose request page records the objection.
            return redirect(f"/console/requests/{created.id}", request)
        await audit(request, staff, "dsr_fulfil", created.subject_id, request_id=created.id, kind=kind)
    return redirect(f"/console/requests/{created.id}", request)
