"""A banner choice sent again with its choice id (after a 429, a 503, a lost answer, at the next page load) is
recorded once: the same answer again, nothing written; the same id with other content is refused."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from server.app import create_app
from server.models import ConsentEvent, Receipt, Subject
from server.settings import Settings
from tests.helpers.app import run
from tests.helpers.banner import ORIGIN, VISITOR, choice, ledger, post
from tests.helpers.clock import Clock

CHOICE_ID = "k7Q2mZp9Xw4Rb8Tn1Lc5Vd"


@pytest.fixture
def visitor(settings: Settings, clock: Clock) -> Iterator[TestClient]:
    with TestClient(create_app(settings, clock=clock), raise_server_exceptions=False, client=VISITOR) as client:
        yield client


async def _written() -> tuple[int, int, int]:
    return await Subject.all().count(), await ConsentEvent.all().count(), await Receipt.all().count()


def test_a_choice_sent_again_gets_the_first_answer_and_writes_nothing(visitor: TestClient) -> None:
    body = choice(visitor, "accept_all", ["preferences", "analytics", "marketing"], choice_id=CHOICE_ID)
    first = post(visitor, body)
    assert first.status_code == 200, first.text
    written = run(visitor, _written)
    assert written[1] == len(first.json()["events"]) > 0
    again = post(visitor, body)
    assert again.status_code == 200 and again.json() == first.json(), "the same events and the stored receipt"
    assert run(visitor, _written) == written
    assert [e["id"] for e in ledger(visitor)] == [e["id"] for e in first.json()["events"]]

    # The visitor's next choice has its own id: recorded, withdrawing what was granted.
    later = post(visitor, {**body, "method": "reject_all", "categories": [], "choice_id": "another-choice-id-000"})
    assert later.status_code == 200 and {e["action"] for e in later.json()["events"]} == {"withdraw"}


def test_a_choice_id_with_other_content_is_refused_and_writes_nothing(visitor: TestClient) -> None:
    body = choice(visitor, "reject_all", [], choice_id=CHOICE_ID)
    assert post(visitor, body).status_code == 200
    written = run(visitor, _written)
    other = post(visitor, {**body, "method": "accept_all", "categories": ["preferences", "analytics", "marketing"]})
    assert other.status_code == 409 and other.headers["content-type"] == "application/problem+json"
    assert other.json()["type"] == "/problems/choice-id-reused"
    assert other.headers["access-control-allow-origin"] == ORIGIN
    assert run(visitor, _written) == written
    assert visitor.get("/problems/choice-id-reused").status_code == 200


def test_a_choice_sent_five_times_at_once_is_recorded_once(visitor: TestClient) -> None:
    """The banner's resend can overlap an answer still on its way: the claims serialise on the key."""
    body = choice(visitor, "save", ["analytics"], choice_id=CHOICE_ID)

    async def five_at_once() -> list[tuple[int, Any]]:
        transport = httpx.ASGITransport(app=visitor.app, client=VISITOR)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            answers = await asyncio.gather(
                *(http.post("/v1/cookie-consents", json=body, headers={"Origin": ORIGIN}) for _ in range(5))
            )
        return [(a.status_code, a.json()) for a in answers]

    answers = run(visitor, five_at_once)
    assert [status for status, _ in answers] == [200] * 5, answers
    assert len({str(answer) for _, answer in answers}) == 1, "every sending answers the one record"
    assert run(visitor, _written)[2] == 1, "one receipt"
    assert len(ledger(visitor)) == len(answers[0][1]["events"])
