"""The service desk's endpoints, gathered by the app factory (`server.app.ENDPOINTS`).

Each staff route declares the permission it needs (`staff:<permission>`); the kernel wraps its handler in the
console's guard for that rule (`server.console.guard.staff_guard`: the staff session, the role and CSRF). The
sign-in pages are public; the customer-facing request pages take a link token.
"""

from __future__ import annotations

from typing import Any

from server.console import (
    pages_admin,
    pages_auth,
    pages_breaches,
    pages_customers,
    pages_notices,
    pages_record,
    pages_requests,
    public,
)
from server.console.guard import StaffHandler
from server.kernel.endpoints import LINK_TOKEN, PUBLIC, Endpoint, Handler, Param, staff

HTML = "text/html"
FORM = "application/x-www-form-urlencoded"
REF = Param("ref", "path", "the company's own id of the customer")
ID = Param("id", "path", "request id", schema={"type": "integer"})
BREACH = Param("id", "path", "breach id", schema={"type": "integer"})


# What every console route but the sign-in's may answer besides its page.
CONSOLE_RESPONSES = {
    "303": "not signed in: to the sign-in page; after a form, to the page it changed",
    "403": "the staff member's role may not do this, or the form expired (htmx: a message, 200)",
}


def _console(path: str, method: str, handler: StaffHandler, permission: str, summary: str, **extra: Any) -> Endpoint:
    """A console route (HTML) for staff whose role has `permission`; documented with `security: []` like every
    non-OAuth route."""
    extra.setdefault("responses", CONSOLE_RESPONSES)
    return Endpoint(path, method, handler, staff(permission), summary, "service-desk", **_media(method), **extra)


def _sign_in(path: str, method: str, handler: Handler, summary: str, **extra: Any) -> Endpoint:
    """A public page of the console: signing in, its style sheet."""
    return Endpoint(path, method, handler, PUBLIC, summary, "service-desk", **_media(method), **extra)


def _media(method: str) -> dict[str, Any]:
    media: dict[str, Any] = {"response_media_type": HTML}
    if method == "POST":
        media["body_media_type"] = FORM
    return media


DESK_ENDPOINTS: list[Endpoint] = [
    _sign_in("/console/login", "GET", pages_auth.login_page, "Sign-in page"),
    _sign_in("/console/login", "POST", pages_auth.login, "Sign in with a local account"),
    _sign_in("/console/auth/oidc", "GET", pages_auth.oidc_start, "Sign in with the company's identity provider"),
    _sign_in("/console/auth/callback", "GET", pages_auth.oidc_callback, "Return from the identity provider"),
    _console("/console/logout", "POST", pages_auth.logout, "console", "Sign out"),
    _sign_in(
        "/console/static/{name}",
        "GET",
        pages_auth.static_file,
        "Console style sheet",
        params=[Param("name", "path", "file name")],
    ),
    _console("/console", "GET", pages_customers.home, "customer.view", "Console home: find a customer, my requests"),
    _console(
        "/console/search", "GET", pages_customers.search, "customer.view", "Search customers by ref, email or phone"
    ),
    _console(
        "/console/customers/{ref}",
        "GET",
        pages_customers.customer_page,
        "customer.view",
        "A customer: consents, timeline",
        params=[REF],
    ),
    _console(
        "/console/customers/{ref}/script",
        "GET",
        pages_customers.script_preview,
        "consent.record",
        "Script for a decision",
        params=[REF],
    ),
    _console(
        "/console/customers/{ref}/record",
        "POST",
        pages_customers.record,
        "consent.record",
        "Record a decision for them",
        params=[REF],
    ),
    _console(
        "/console/customers/{ref}/link",
        "POST",
        pages_customers.send_link,
        "link.send",
        "Email a preference link",
        params=[REF],
    ),
    _console(
        "/console/customers/{ref}/proof",
        "GET",
        pages_customers.proof_bundle,
        "proof.download",
        "Proof bundle (zip)",
        params=[REF],
    ),
    _console(
        "/console/customers/{ref}/notices/{id}/resend",
        "POST",
        pages_notices.resend,
        "notice.resend",
        "Send a failed notice to a recipient again (GDPR 19)",
        params=[REF, Param("id", "path", "notice id", schema={"type": "string", "format": "uuid"})],
    ),
    _console(
        "/console/customers/{ref}/requests",
        "POST",
        pages_customers.open_request,
        "request.open",
        "Open a request",
        params=[REF],
    ),
    _console(
        "/console/customers/{ref}/snapshots/{sha256}",
        "GET",
        pages_customers.snapshot_page,
        "customer.view",
        "What was shown for an event",
        params=[REF, Param("sha256", "path", "UI snapshot hash")],
    ),
    _console("/console/requests", "GET", pages_requests.queue_page, "request.view", "Request queue, by due date"),
    _console(
        "/console/requests/{id}",
        "GET",
        pages_requests.request_page,
        "request.view",
        "A request and its history",
        params=[ID],
    ),
    _console(
        "/console/requests/{id}/take",
        "POST",
        pages_requests.take,
        "request.handle",
        "Assign a request to me",
        params=[ID],
    ),
    _console(
        "/console/requests/{id}/assign",
        "POST",
        pages_requests.assign,
        "request.assign",
        "Reassign a request",
        params=[ID],
    ),
    _console(
        "/console/requests/{id}/status",
        "POST",
        pages_requests.set_status,
        "request.handle",
        "Change the status",
        params=[ID],
    ),
    _console(
        "/console/requests/{id}/extend",
        "POST",
        pages_requests.extend,
        "request.extend",
        "Extend the deadline",
        params=[ID],
    ),
    _console(
        "/console/requests/{id}/fulfil",
        "POST",
        pages_requests.fulfil,
        "request.handle",
        "Carry the request out",
        params=[ID],
    ),
    _console(
        "/console/requests/{id}/restriction-notice",
        "POST",
        pages_requests.restriction_notice,
        "request.sensitive",
        "Tell the customer a restriction will be lifted",
        params=[ID],
    ),
    _console(
        "/console/requests/{id}/restriction-lift",
        "POST",
        pages_requests.restriction_lift,
        "request.sensitive",
        "Lift a restriction",
        params=[ID],
    ),
    _console(
        "/console/breaches", "GET", pages_breaches.register_page, "breach.view", "The breach register (GDPR 33(5))"
    ),
    _console("/console/breaches", "POST", pages_breaches.record, "breach.manage", "Record a personal data breach"),
    _console(
        "/console/breaches/export",
        "GET",
        pages_breaches.export,
        "breach.view",
        "The breach register with every change (JSON)",
    ),
    _console(
        "/console/breaches/{id}",
        "GET",
        pages_breaches.breach_page,
        "breach.view",
        "A breach and its trail",
        params=[BREACH],
    ),
    _console(
        "/console/breaches/{id}",
        "POST",
        pages_breaches.update,
        "breach.manage",
        "New facts or assessment",
        params=[BREACH],
    ),
    _console(
        "/console/breaches/{id}/notified",
        "POST",
        pages_breaches.notified,
        "breach.manage",
        "Record the notification to the supervisory authority (GDPR 33)",
        params=[BREACH],
    ),
    _console(
        "/console/breaches/{id}/told",
        "POST",
        pages_breaches.told,
        "breach.manage",
        "Record the communication to the people concerned, or why none (GDPR 34)",
        params=[BREACH],
    ),
    _console(
        "/console/breaches/{id}/note", "POST", pages_breaches.note, "breach.manage", "Add a note", params=[BREACH]
    ),
    _console(
        "/console/breaches/{id}/close", "POST", pages_breaches.close, "breach.manage", "Close a breach", params=[BREACH]
    ),
    _console(
        "/console/breaches/{id}/reopen",
        "POST",
        pages_breaches.reopen,
        "breach.manage",
        "Reopen a breach",
        params=[BREACH],
    ),
    _console(
        "/console/breaches/{id}/notification",
        "GET",
        pages_breaches.notification,
        "breach.view",
        "Notification content for the authority and the people concerned (Markdown)",
        params=[BREACH],
    ),
    _console(
        "/console/record",
        "GET",
        pages_record.record_page,
        "record.view",
        "Record of processing activities (GDPR 30)",
        params=[Param("format", "query", "html (default), md or json")],
    ),
    _console("/console/answers", "GET", pages_admin.answers_page, "console", "Approved answers"),
    _console(
        "/console/answers/{id}",
        "GET",
        pages_admin.answer_page,
        "console",
        "One approved answer",
        params=[Param("id", "path", "answer id")],
    ),
    _console(
        "/console/audit",
        "GET",
        pages_admin.audit_page,
        "audit.view",
        "Audit log",
        responses={**CONSOLE_RESPONSES, "422": "a filter longer than the column it filters"},
    ),
    _console("/console/staff", "GET", pages_admin.staff_page, "staff.manage", "Staff accounts"),
    _console("/console/staff", "POST", pages_admin.staff_create, "staff.manage", "Create a local staff account"),
    _console(
        "/console/staff/{id}",
        "POST",
        pages_admin.staff_update,
        "staff.manage",
        "Change a staff account",
        params=[Param("id", "path", "staff id")],
    ),
    _console("/console/ledger/export", "GET", pages_admin.ledger_export, "ledger.export", "The whole ledger (NDJSON)"),
    Endpoint(
        "/requests",
        "GET",
        public.request_form,
        LINK_TOKEN,
        "Form: make a data-subject request (from the preference center)",
        "service-desk",
        params=[Param("token", "query", "a preference-center link token"), Param("lang", "query", "fr or en")],
        response_media_type=HTML,
        responses={"403": "the link is not valid or has expired", "410": "the person's data were erased"},
    ),
    Endpoint(
        "/requests",
        "POST",
        public.submit_request,
        LINK_TOKEN,
        "Open a data-subject request (form field `token`: a preference-center link token)",
        "service-desk",
        body_media_type=FORM,
        response_media_type=HTML,
        responses={
            "201": "the request is opened (its page, or JSON with Accept: application/json)",
            "200": "the same request sent again within 10 minutes: the first one's page",
            "403": "the link is not valid or has expired",
            "410": "the person's data were erased",
            "422": "no such kind of request, or a text over 2,000 characters: the form again, with why",
        },
    ),
    Endpoint(
        "/dsr/export/{token}",
        "GET",
        public.export_download,
        LINK_TOKEN,
        "Download one's access / portability export (signed, expiring link)",
        "service-desk",
        params=[Param("token", "path", "signed export link"), Param("format", "query", "json or csv")],
        response_media_type="application/octet-stream",
        error_media_type=HTML,
        responses={
            "400": "an unknown format",
            "404": "the link is not valid, or names no finished access or portability request",
            "410": "the link has expired, or the person's data were erased",
        },
    ),
]
