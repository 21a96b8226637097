"""`Requests`: opening data-subject requests, for the console and the customer-facing pages alike."""

from __future__ import annotations

import logging
from datetime import date, timedelta

from server.db import busy_as_domain_error
from server.dsr import requests as dsr
from server.dsr.context import Context
from server.dsr.effects import object_to_marketing
from server.dsr.requests import SUBJECT, Actor
from server.errors import SEND_AGAIN
from server.models import DataSubjectRequest

log = logging.getLogger("server.dsr")


class Requests:
    def __init__(self, context: Context) -> None:
        self.context = context

    async def open_request(
        self,
        subject_ref: str,
        kind: str,
        channel: str = "preference_center",
        details: str = "",
        *,
        actor: Actor = SUBJECT,
        received: date | None = None,
        owner_id: int | None = None,
    ) -> DataSubjectRequest:
        """Open a data-subject request for `subject_ref` (from the preference center by default).

        An objection to direct marketing opened by the person takes effect at once (GDPR 21(3)); every other kind
        goes to the queue, due one month after receipt (GDPR 12(3)).
        """
        request, _ = await self.open_or_repeat(
            subject_ref, kind, channel, details, actor=actor, received=received, owner_id=owner_id
        )
        return request

    async def open_or_repeat(
        self,
        subject_ref: str,
        kind: str,
        channel: str = "preference_center",
        details: str = "",
        *,
        actor: Actor = SUBJECT,
        received: date | None = None,
        owner_id: int | None = None,
        repeat_within: timedelta | None = None,
    ) -> tuple[DataSubjectRequest, bool]:
        """`open_request`, and whether the request is new (see `dsr.open_or_repeat`): a repeated request is
        answered with the earlier one, whose effects already ran."""
        subject = await dsr.subject_for(subject_ref, self.context.secret_key)
        request, new = await dsr.open_or_repeat(
            subject,
            kind,
            channel=channel,
            details=details,
            actor=actor,
            now=self.context.now(),
            zone=self.context.zone,
            received=received,
            owner_id=owner_id,
            repeat_within=repeat_within,
        )
        if not new:
            return request, False
        if kind == "objection" and actor.type == "subject" and subject.erased_at is None:
            await self.object_now(request, actor, touchpoint="preference_center")
        return request, True

    async def object_now(self, request: DataSubjectRequest, actor: Actor, *, touchpoint: str) -> bool:
        """Carry out an objection to direct marketing as soon as it is opened (GDPR 21(3)); False when the
        database stayed busy. The request is stored by then: answering "send it again" would open a second one, so
        it stays open in the queue, where an agent records the objection."""
        try:
            with busy_as_domain_error():
                await object_to_marketing(self.context, request, actor, touchpoint=touchpoint)
        except SEND_AGAIN as exc:
            log.warning("objection of request %s left to the desk: %s", request.id, exc.slug)
            return False
        return True
