"""`POST /v1/subjects/{ref}/preference-links` and `.../unsubscribe-links` (scope `consent:write`).

For the company's own site and mails: a link that opens the preference center, and the RFC 8058 unsubscribe URL
with the two headers to put in a marketing mail.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from preference_center.schemas import PreferenceLinkIn, UnsubscribeLinkIn
from preference_center.web import center_of
from server.consent.check import validate_question
from server.db import lock_row
from server.errors import InvalidRequest, NotUnsubscribable
from server.kernel.bodies import read_json
from server.kernel.params import iso, subject_ref
from server.ledger.evidence import pseudonym
from server.models import Subject
from server.services import services_of
from server.subjects.contact import normalise_email, refuse_suppressed, replace_contact


def _json(data: Any) -> Response:
    return Response(orjson.dumps(data), media_type="application/json", headers={"Cache-Control": "no-store"})


def _instant(epoch: int) -> str | None:
    return iso(datetime.fromtimestamp(epoch, UTC))


async def set_contact(
    secret: str, ref: str, email: str | None, locale: str | None, jurisdiction: str, now: datetime
) -> None:
    """Contact data live on the subject row, apart from the ledger, so erasure can blank them (GDPR 17). A replaced
    address is kept as a keyed hash, for an erasure to suppress too."""
    changes: dict[str, Any] = {k: v for k, v in {"email": email, "locale": locale}.items() if v is not None}
    if email is not None:
        # GDPR 17: an erased person's address is suppressed; it is never re-imported or contacted.
        changes["email"] = normalise_email(email)
        await refuse_suppressed(secret, email=changes["email"])
    subject = await Subject.get_or_none(ref=ref)
    if subject is None:
        try:
            await Subject.create(id=uuid.uuid4(), ref=ref, pseudonym=pseudonym(secret, ref), **changes)
            return
        except IntegrityError:  # created meanwhile by a concurrent write
            subject = await Subject.get(ref=ref)
    async with in_transaction() as conn:
        # Under the row lock: an erasure committed meanwhile is seen, and two changes keep both former addresses.
        await lock_row(conn, "subjects", subject.id)
        locked = await Subject.get(id=subject.id, using_db=conn)
        if locked.erased_at is not None:
            raise InvalidRequest("this subject's data was erased (GDPR 17); contact data cannot be set again here")
        await replace_contact(conn, secret, locked, changes, now, jurisdiction)


async def preference_link(request: Request) -> Response:
    """A link token opening `GET /preferences`, optionally setting the subject's email and locale first."""
    services = services_of(request)
    center = center_of(request)
    ref = subject_ref(request.path_params["ref"])
    body = await read_json(request, PreferenceLinkIn)
    if body.email is not None or body.locale is not None:
        await set_contact(
            services.settings.secret_key,
            ref,
            body.email,
            body.locale,
            services.controller.jurisdiction,
            services.clock(),
        )
    token, expires = center.links.issue(ref, "preferences", lang=body.locale)
    return _json({"url": center.url(f"/preferences?token={token}"), "token": token, "expires_at": _instant(expires)})


async def unsubscribe_link(request: Request) -> Response:
    """The one-click unsubscribe URL for one purpose x channel and the RFC 8058 headers that carry it; refused (422)
    where the basis is `necessary`, since the one-click POST could change nothing there."""
    services = services_of(request)
    center = center_of(request)
    ref = subject_ref(request.path_params["ref"])
    body = await read_json(request, UnsubscribeLinkIn)
    catalog = await services.catalog.get()
    validate_question(catalog, ref, body.purpose, body.channel)
    if catalog.purposes[body.purpose].basis_for(body.channel) == "necessary":
        # The one-click POST withdraws a consent or records an objection; here it could do neither.
        raise NotUnsubscribable(
            f"purpose {body.purpose!r} is necessary on channel {body.channel!r}: there is nothing to unsubscribe from",
            purpose=body.purpose,
            channel=body.channel,
        )
    token, expires = center.links.issue(ref, "unsubscribe", purpose=body.purpose, channel=body.channel, lang=body.lang)
    url = center.url(f"/unsubscribe/{token}")
    headers = {"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
    return _json({"url": url, "headers": headers, "expires_at": _instant(expires)})
