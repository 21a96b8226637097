"""The forms of the preference center page: toggle (or object), resend the confirmation mail, unsubscribe from all
marketing, answer a re-consent question. Each records through `Ledger.record` with the fragment as shown."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from preference_center import actions
from preference_center.center import PreferenceCenter
from preference_center.pages import (
    Posted,
    answer,
    erased_page,
    posted,
    reconsent_fragment,
    record,
    record_and_confirm,
)
from preference_center.view import PRIMARY_DOCUMENT, Row, build_rows, find_control
from preference_center.web import center_of
from server.errors import SEND_AGAIN, InvalidTransition, SubjectErased
from server.ledger.append import Decision
from server.services import services_of


def _labels(center: PreferenceCenter, lang: str, row: Row, channel: str) -> dict[str, str]:
    return {
        "purpose": row.purpose.titles.get(lang) or row.purpose.titles.get("en") or row.code,
        "channel": center.channel_phrase(lang, channel),
    }


async def _shown(request: Request, p: Posted) -> tuple[PreferenceCenter, str, list[Row]]:
    """What the person had on screen when they posted: the rows built from their current state."""
    services = services_of(request)
    lang = p.ctx.lang
    return center_of(request), lang, build_rows(await services.catalog.get(), p.data, lang, services.clock())


async def _busy(request: Request, p: Posted, center: PreferenceCenter, lang: str) -> Response:
    """The database stayed locked: nothing was recorded, and the page says so (503, to send again)."""
    notice = center.gettext(lang, "Nothing was saved: we could not record your choice just now. Please try again.")
    response = await answer(request, p, notice, status=503)
    response.headers["Retry-After"] = "1"
    return response


# --- POST /preferences/toggle ---------------------------------------------------------------------------------------


async def toggle(request: Request) -> Response:
    """One switch (or objection) changed; recorded with the row exactly as it was shown."""
    p = await posted(request)
    if isinstance(p, Response):
        return p
    center, lang, rows = await _shown(request, p)
    purpose, _, rest = p.fields.get("set", "").partition(":")
    channel, _, value = rest.partition(":")
    found = find_control(rows, purpose, channel)
    if found is None or value not in ("on", "off", "object", "unobject"):
        return await answer(request, p, center.gettext(lang, "This choice does not exist."), status=400)
    row, control = found
    if control.kind == "necessary" or (value in ("on", "off")) != (control.kind == "switch"):
        return await answer(request, p, center.gettext(lang, "This choice does not exist."), status=400)
    target = None if row.reconsent is not None else row.code
    labels = _labels(center, lang, row, channel)
    decision = actions.toggle_decision(control, value)
    if decision is None:
        return await answer(
            request, p, center.gettext(lang, "No change: this choice was already saved."), target=target
        )
    shown = center.fragment(lang, "_row.html", row=row)
    try:
        recorded = await record_and_confirm(request, p, row.policy.label, [decision], "toggle", shown)
    except SubjectErased:  # erased since the page was checked (GDPR 17): the erased page, nothing recorded
        return erased_page(request, lang)
    except InvalidTransition:
        notice = center.gettext(lang, "Your choices changed in the meantime; here they are as they stand now.")
        return await answer(request, p, notice, status=409)
    except SEND_AGAIN:
        return await _busy(request, p, center, lang)
    event = recorded.result.events[0]
    if event.status == "pending_confirmation":
        mail = next((c["mail"] for c in recorded.confirmations if c["event_id"] == event.id), "not_sent")
        notice = _confirmation_notice(center, lang, mail, labels)
    elif decision.action == "object":
        notice = center.gettext(lang, "Saved: you object to %(purpose)s %(channel)s. We stop.", **labels)
    elif event.status == "granted":
        notice = center.gettext(lang, "Saved: %(purpose)s %(channel)s is on.", **labels)
    else:
        notice = center.gettext(lang, "Saved: %(purpose)s %(channel)s is off.", **labels)
    return await answer(request, p, notice, target=target)


def _confirmation_notice(center: PreferenceCenter, lang: str, mail: str, labels: dict[str, str]) -> str:
    """GDPR 7(1) double opt-in: the grant waits for the click in the mail; say so, or say why no mail left (`mail`
    is the outcome `OptIn` reports: sent, no_email, rate_limited, not_sent, suppressed, restricted)."""
    if mail == "sent":
        return center.gettext(
            lang,
            "Almost done: we sent you an email to confirm %(purpose)s %(channel)s. "
            "Nothing is sent to you until you click the link in it.",
            **labels,
        )
    if mail == "no_email":
        return center.gettext(
            lang,
            "Saved, but we have no email address for you, so we cannot send the confirmation link for "
            "%(purpose)s. Until it is confirmed, we send you nothing.",
            **labels,
        )
    not_sent = center.gettext(
        lang, "Saved, but the confirmation email could not be sent. Please use “Send the email again”."
    )
    if mail == "rate_limited":
        # The same limit as "Send the email again" and as grants recorded by the API or the desk: a forwarded link
        # cannot turn the switch into a way to flood the person's inbox. The grant is saved and waits.
        too_many = center.gettext(lang, "Too many emails were sent already. Please try again in a few minutes.")
        return f"{not_sent} {too_many}"
    return not_sent


# --- POST /preferences/resend ---------------------------------------------------------------------------------------


async def resend(request: Request) -> Response:
    """Send the confirmation mail of a pending double opt-in again (nothing is recorded)."""
    p = await posted(request)
    if isinstance(p, Response):
        return p
    center, lang, rows = await _shown(request, p)
    purpose, _, channel = p.fields.get("resend", "").partition(":")
    found = find_control(rows, purpose, channel)
    if found is None or found[1].reason != "pending_confirmation":
        return await answer(request, p, center.gettext(lang, "There is nothing to confirm here."), status=400)
    row = found[0]
    if not await center.optin.may_mail(p.claims.ref):
        notice = center.gettext(lang, "Too many emails were sent already. Please try again in a few minutes.")
        return await answer(request, p, notice, target=row.code, status=429)
    state = p.data.states[(purpose, channel)]
    labels = _labels(center, lang, row, channel)
    mail = "no_email"
    if p.data.email:
        sent = await center.optin.try_send_confirmation(
            ref=p.claims.ref,
            email=p.data.email,
            lang=lang,
            purpose=row.code,
            purpose_title=labels["purpose"],
            channel=channel,
            event_id=state.event_id,
        )
        mail = "sent" if sent else "not_sent"
    return await answer(request, p, _confirmation_notice(center, lang, mail, labels), target=row.code)


# --- POST /preferences/unsubscribe-all ------------------------------------------------------------------------------


async def unsubscribe_all(request: Request) -> Response:
    """GDPR 7(3): one click withdraws every marketing consent and objects to every legitimate-interest channel,
    in one ledger transaction."""
    p = await posted(request)
    if isinstance(p, Response):
        return p
    services = services_of(request)
    center = center_of(request)
    lang = p.ctx.lang
    catalog = await services.catalog.get()
    now = services.clock()
    rows = build_rows(catalog, p.data, lang, now)
    decisions = actions.unsubscribe_all_decisions(rows)
    if not decisions:
        return await answer(request, p, center.gettext(lang, "Nothing to change: you receive no marketing from us."))
    policy = catalog.in_force(PRIMARY_DOCUMENT, lang, now)
    assert policy is not None
    try:
        await record(request, p, policy.label, decisions, "unsubscribe_all", center.fragment(lang, "_all.html"))
    except InvalidTransition:
        notice = center.gettext(lang, "Your choices changed in the meantime; here they are as they stand now.")
        return await answer(request, p, notice, status=409)
    except SEND_AGAIN:
        return await _busy(request, p, center, lang)
    notice = center.gettext(lang, "Done: you will no longer receive any marketing from us.")
    return await answer(request, p, notice)


# --- POST /preferences/reconsent ------------------------------------------------------------------------------------


async def reconsent(request: Request) -> Response:
    """The answer to "our policy changed: do you agree again?": a grant under the new version, or a withdrawal."""
    p = await posted(request)
    if isinstance(p, Response):
        return p
    center, lang, rows = await _shown(request, p)
    purpose, choice = p.fields.get("purpose", ""), p.fields.get("answer", "")
    row = next((r for r in rows if r.code == purpose and r.reconsent is not None), None)
    if row is None or row.reconsent is None or choice not in ("accept", "decline"):
        return await answer(request, p, center.gettext(lang, "There is nothing to confirm here."), status=400)
    shown = await reconsent_fragment(center, lang, row)
    action = "grant" if choice == "accept" else "withdraw"
    decisions = [Decision(purpose, channel, action) for channel in row.reconsent.channels]
    try:
        await record(request, p, row.reconsent.current.label, decisions, "reconsent", shown)
    except SubjectErased:
        return erased_page(request, lang)
    except InvalidTransition:
        notice = center.gettext(lang, "Your choices changed in the meantime; here they are as they stand now.")
        return await answer(request, p, notice, status=409)
    except SEND_AGAIN:
        return await _busy(request, p, center, lang)
    labels = {"purpose": _labels(center, lang, row, row.reconsent.channels[0])["purpose"]}
    if choice == "accept":
        notice = center.gettext(lang, "Thank you: %(purpose)s continues under the new policy.", **labels)
    else:
        notice = center.gettext(lang, "Saved: your consent to %(purpose)s is withdrawn.", **labels)
    return await answer(request, p, notice)
