"""The console's view of what recipients were told about a customer (GDPR 19), and sending a failed notice again."""

from __future__ import annotations

from urllib.parse import quote
from uuid import UUID

from starlette.requests import Request
from starlette.responses import Response

from server.console import customers
from server.console.web import Staff, audit, desk_of, is_htmx, page, redirect
from server.errors import NotFound
from server.kernel.params import subject_ref
from server.models import RecipientNotice, Subject

SHOWN = 200  # the latest notices on the customer's page


async def notices_of(subject: Subject) -> list[RecipientNotice]:
    """The customer's latest notices, newest first, with their recipient."""
    return list(
        await RecipientNotice.filter(subject_id=subject.id)
        .order_by("-changed_at", "-id")
        .limit(SHOWN)
        .prefetch_related("recipient")
    )


def _notice_id(request: Request) -> UUID:
    try:
        return UUID(request.path_params["id"])
    except ValueError as exc:
        raise NotFound("no such notice", parameter="id") from exc


async def resend(request: Request, staff: Staff) -> Response:
    """Put a failed notice back in the queue, due now; the dispatcher is woken at once."""
    desk = desk_of(request)
    subject = await customers.get_subject(subject_ref(request.path_params["ref"]))
    notice_id = _notice_id(request)
    if not await RecipientNotice.exists(id=notice_id, subject_id=subject.id):
        raise NotFound("no such notice for this customer", parameter="id")
    queued = await desk.services.recipients.send_again([notice_id])
    await audit(request, staff, "staff_resend_notice", subject.id, notice=str(notice_id))
    message = "The notice will be sent again now." if queued else "This notice is not failed: nothing to send again."
    if is_htmx(request):
        return page(request, "_flash.html", kind="ok" if queued else "error", message=message)
    return redirect(f"/console/customers/{quote(subject.ref, safe='')}#notices-h")
