"""An erasure deletes the stored answers of the keyed writes that named the person (GDPR 17), on both databases: the
answer (ref, event ids, receipt, a live preference link) is gone, another subject's is kept, and the same request
sent again with its key is carried out anew, so its grant is refused as any grant for an erased subject is."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from server.app import create_app
from server.ledger.evidence import pseudonym
from server.models import ConsentEvent
from server.settings import Settings
from tests.helpers import banner
from tests.helpers.app import run, services_of
from tests.helpers.clock import Clock
from tests.helpers.console import new_staff, open_via_console, post, sign_in
from tests.helpers.sql import sql

REF = "erased-keyed"
OTHER = "kept-keyed"
GRANT = {
    "policy": {"document": "privacy-policy", "version": "2", "lang": "fr"},
    "decisions": [{"purpose": "offers", "channel": "email", "action": "grant"}],
}


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    return settings.with_overrides(mail_dir=tmp_path / "mail")


def _keys(database_url: str) -> list[tuple[Any, bytes]]:
    return [
        (subject, bytes(body))
        for subject, body in sql(database_url, query="SELECT subject, body FROM idempotency_keys")
    ]


def _erase(client: TestClient, ref: str) -> None:
    supervisor = new_staff(client, "supervisor")
    csrf = sign_in(client, email=supervisor.email)
    request_id = open_via_console(client, csrf, ref, "erasure")
    answer = post(client, csrf, f"/console/requests/{request_id}/fulfil", {"confirm": "yes"})
    assert answer.status_code == 303, answer.text


def test_an_erasure_deletes_the_stored_answers_that_name_the_person(
    client: TestClient, auth: dict[str, str], database_url: str
) -> None:
    def keyed(key: str) -> dict[str, str]:
        return {**auth, "Idempotency-Key": key}

    granted = client.post(f"/v1/subjects/{REF}/consents", json=GRANT, headers=keyed("grant-1"))
    assert granted.status_code == 201, granted.text
    link = client.post(
        f"/v1/subjects/{REF}/preference-links", json={"email": "gone@example.com"}, headers=keyed("link-1")
    )
    assert link.status_code == 200, link.text
    other = client.post(f"/v1/subjects/{OTHER}/consents", json=GRANT, headers=keyed("grant-2"))
    assert other.status_code == 201, other.text
    replayed = client.post(f"/v1/subjects/{REF}/consents", json=GRANT, headers=keyed("grant-1"))
    assert replayed.headers.get("idempotency-replayed") == "true"
    assert replayed.content == granted.content

    secret = services_of(client).settings.secret_key
    stored = _keys(database_url)
    assert sorted(subject for subject, _ in stored) == sorted(
        [pseudonym(secret, REF), pseudonym(secret, REF), pseudonym(secret, OTHER)]
    )
    token = link.json()["token"].encode()  # a live link to the person's preferences
    event_id = granted.json()["events"][0]["id"].encode()
    assert any(REF.encode() in body and event_id in body for _, body in stored)
    assert any(token in body for _, body in stored)

    _erase(client, REF)

    after = _keys(database_url)
    assert [subject for subject, _ in after] == [pseudonym(secret, OTHER)], "the other subject's answer is kept"
    assert not any(REF.encode() in body or event_id in body or token in body for _, body in after)

    # The same request with the same key: not the old answer, but a new write, refused like any grant would be.
    again = client.post(f"/v1/subjects/{REF}/consents", json=GRANT, headers=keyed("grant-1"))
    assert again.status_code == 409, again.text
    assert again.json()["type"] == "/problems/subject-erased"
    assert "idempotency-replayed" not in again.headers
    link_again = client.post(
        f"/v1/subjects/{REF}/preference-links", json={"email": "gone@example.com"}, headers=keyed("link-1")
    )
    assert "idempotency-replayed" not in link_again.headers
    assert link_again.content != link.content
    # The other subject's key still answers its first answer.
    kept = client.post(f"/v1/subjects/{OTHER}/consents", json=GRANT, headers=keyed("grant-2"))
    assert kept.headers.get("idempotency-replayed") == "true" and kept.content == other.content


@pytest.fixture
def visitor(settings: Settings, clock: Clock) -> Iterator[TestClient]:
    app = create_app(settings, clock=clock)
    with TestClient(app, raise_server_exceptions=False, client=banner.VISITOR) as client:
        yield client


async def _events() -> int:
    return await ConsentEvent.all().count()


def test_a_banner_choice_resent_after_the_erasure_records_nothing(visitor: TestClient, database_url: str) -> None:
    """`banner_choices` is kept: hashes and a receipt id, nothing the kept ledger does not say. A resend of a choice
    recorded before the erasure is answered from the kept receipt and writes nothing; a new choice that grants is
    refused like any grant for an erased subject."""
    body = banner.choice(visitor, "accept_all", ["preferences", "analytics", "marketing"], choice_id="k7Q2mZp9Xw4R")
    first = banner.post(visitor, body)
    assert first.status_code == 200, first.text
    _erase(visitor, banner.CONSENT_ID)
    written = run(visitor, _events)
    (row,) = sql(database_url, query="SELECT count(*) FROM banner_choices")
    assert row[0] == 1

    again = banner.post(visitor, body)
    assert again.status_code == 200 and again.json() == first.json()
    assert run(visitor, _events) == written
    granted = banner.post(visitor, {**body, "choice_id": "another-choice-id-000"})
    assert granted.status_code == 409 and granted.json()["type"] == "/problems/subject-erased", granted.text
    assert run(visitor, _events) == written
