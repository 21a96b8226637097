"""`Idempotency-Key` on the writes that take it (server.kernel.idempotency), over real HTTP on both databases: the
same key and request answer the first answer again and write nothing; another request is refused; concurrent
copies make one event; keys expire; a double opt-in's mail goes once."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.testclient import TestClient

from server.app import create_app
from server.kernel.endpoints import PUBLIC, Endpoint, build_routes
from server.kernel.idempotency import REQUIRED, IdempotencyKeys
from server.kernel.problems import EXCEPTION_HANDLERS
from server.recipients import registry
from server.settings import Settings
from tests.helpers.api import bearer
from tests.helpers.app import run, services_of
from tests.helpers.clock import Clock
from tests.helpers.sql import sql

REF = "cust-idem"
GRANT = {
    "policy": {"document": "privacy-policy", "version": "2", "lang": "fr"},
    "decisions": [{"purpose": "offers", "channel": "email", "action": "grant"}],
}
DENY = {**GRANT, "decisions": [{"purpose": "offers", "channel": "sms", "action": "deny"}]}


@pytest.fixture
def mail_dir(tmp_path: Path) -> Path:
    return tmp_path / "mail"


@pytest.fixture
def client(settings: Settings, clock: Clock, mail_dir: Path) -> Iterator[TestClient]:
    app = create_app(settings.with_overrides(mail_dir=mail_dir), clock=clock)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def keyed(auth: dict[str, str], key: str) -> dict[str, str]:
    return {**auth, "Idempotency-Key": key}


def events(database_url: str, ref: str = REF) -> int:
    (row,) = sql(
        database_url,
        query=f"SELECT count(*) FROM consent_events e JOIN subjects s ON s.id = e.subject_id WHERE s.ref = '{ref}'",
    )
    return int(row[0])


def keys(database_url: str) -> int:
    (row,) = sql(database_url, query="SELECT count(*) FROM idempotency_keys")
    return int(row[0])


def post(client: TestClient, headers: dict[str, str], body: dict[str, Any], ref: str = REF) -> Any:
    return client.post(f"/v1/subjects/{ref}/consents", json=body, headers=headers)


def test_the_same_key_and_body_answer_the_first_answer_and_write_nothing(
    client: TestClient, auth: dict[str, str], database_url: str
) -> None:
    first = post(client, keyed(auth, '"3f1c2b7e-1111-4a4a-9b9b-000000000001"'), GRANT)
    assert first.status_code == 201, first.text
    assert "idempotency-replayed" not in first.headers
    again = post(client, keyed(auth, '"3f1c2b7e-1111-4a4a-9b9b-000000000001"'), GRANT)
    assert again.status_code == 201
    assert again.headers["Idempotency-Replayed"] == "true"
    assert again.content == first.content  # the same events, hashes and receipt
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["Content-Type"] == first.headers["Content-Type"]
    # The plain form of the same key is the same key.
    plain = post(client, keyed(auth, "3f1c2b7e-1111-4a4a-9b9b-000000000001"), GRANT)
    assert plain.content == first.content and plain.headers["Idempotency-Replayed"] == "true"
    assert events(database_url) == 1
    # Without a key, the same body is a new write.
    assert post(client, auth, GRANT).status_code == 201
    assert events(database_url) == 2


def test_the_same_key_with_another_request_is_refused(
    client: TestClient, auth: dict[str, str], database_url: str
) -> None:
    assert post(client, keyed(auth, "k-1"), GRANT).status_code == 201
    for other in (
        post(client, keyed(auth, "k-1"), DENY),  # another body
        post(client, keyed(auth, "k-1"), GRANT, ref="cust-other"),  # another path
    ):
        assert other.status_code == 422, other.text
        assert other.headers["Content-Type"] == "application/problem+json"
        assert other.json()["type"] == "/problems/idempotency-key-reused"
    assert events(database_url) == 1 and events(database_url, "cust-other") == 0
    assert client.get("/problems/idempotency-key-reused").status_code == 200


def test_keys_are_each_clients_own(client: TestClient, auth: dict[str, str], database_url: str) -> None:
    other = bearer(client)
    assert post(client, keyed(auth, "shared"), GRANT).status_code == 201
    theirs = post(client, keyed(other, "shared"), GRANT)
    assert theirs.status_code == 201 and "idempotency-replayed" not in theirs.headers
    assert events(database_url) == 2


@pytest.mark.parametrize("value", ['""', "", '"unterminated', 'a"b', "é", "x" * 256, '"' + "x" * 256 + '"', '"a\\qb"'])
def test_a_header_that_is_not_a_key_is_refused_and_writes_nothing(
    client: TestClient, auth: dict[str, str], database_url: str, value: str
) -> None:
    headers = [(name.encode(), v.encode()) for name, v in auth.items()]
    headers += [(b"content-type", b"application/json"), (b"idempotency-key", value.encode())]
    refused = client.post(f"/v1/subjects/{REF}/consents", content=orjson.dumps(GRANT), headers=headers)
    assert refused.status_code == 400, refused.text
    assert refused.json()["type"] == "/problems/invalid-idempotency-key"
    assert events(database_url) == 0


def test_a_refused_write_keeps_no_key(client: TestClient, auth: dict[str, str], database_url: str) -> None:
    unknown = {**GRANT, "decisions": [{"purpose": "no-such-purpose", "channel": "email", "action": "grant"}]}
    assert post(client, keyed(auth, "k-2"), unknown).status_code == 422
    assert keys(database_url) == 0
    # Nothing was done, so the key is free; the corrected request is carried out.
    assert post(client, keyed(auth, "k-2"), GRANT).status_code == 201
    assert events(database_url) == 1


def test_concurrent_copies_of_a_keyed_write_make_one_event(
    client: TestClient, auth: dict[str, str], database_url: str
) -> None:
    answers: list[Any] = []
    start = threading.Barrier(8)

    def send() -> None:
        start.wait()
        answers.append(post(client, keyed(auth, "same-click"), GRANT))

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted({a.status_code for a in answers}) in ([201], [201, 409]), [a.text for a in answers]
    written = [a for a in answers if a.status_code == 201]
    assert len({a.content for a in written}) == 1
    assert [a for a in written if "idempotency-replayed" not in a.headers] != []
    for busy in (a for a in answers if a.status_code == 409):
        assert busy.json()["type"] == "/problems/idempotency-key-in-flight" and busy.headers["Retry-After"]
    assert events(database_url) == 1
    # Sent again once done, every copy gets the first answer.
    assert post(client, keyed(auth, "same-click"), GRANT).content == written[0].content


def test_keys_expire_after_their_retention_and_are_swept(
    client: TestClient, auth: dict[str, str], database_url: str, clock: Clock
) -> None:
    clock.set(clock())
    first = post(client, keyed(auth, "k-3"), GRANT)
    assert first.status_code == 201
    clock.advance(hours=23, minutes=59)
    assert post(client, keyed(auth, "k-3"), GRANT).headers["Idempotency-Replayed"] == "true"
    assert post(client, keyed(auth, "k-4"), DENY).status_code == 201
    clock.advance(minutes=2)  # k-3 is 24 h old: expired
    again = post(client, keyed(auth, "k-3"), DENY)
    assert again.status_code == 201 and "idempotency-replayed" not in again.headers
    assert events(database_url) == 3
    clock.advance(hours=25)  # every key expired; the next keyed write sweeps them
    assert post(client, keyed(auth, str(uuid.uuid4())), GRANT).status_code == 201
    assert keys(database_url) == 1


def test_a_replayed_double_opt_in_mails_once_and_says_what_the_first_did(
    client: TestClient, auth: dict[str, str], database_url: str, mail_dir: Path
) -> None:
    link = client.post(
        f"/v1/subjects/{REF}/preference-links",
        json={"email": "ana@example.com", "locale": "en"},
        headers=keyed(auth, "link-1"),
    )
    assert link.status_code == 200, link.text
    replayed_link = client.post(
        f"/v1/subjects/{REF}/preference-links",
        json={"email": "ana@example.com", "locale": "en"},
        headers=keyed(auth, "link-1"),
    )
    assert replayed_link.json()["token"] == link.json()["token"]
    assert replayed_link.headers["Idempotency-Replayed"] == "true"
    optin = {**GRANT, "decisions": [{"purpose": "newsletter", "channel": "email", "action": "grant"}]}
    first = post(client, keyed(auth, "optin-1"), optin)
    assert first.status_code == 201, first.text
    assert [c["mail"] for c in first.json()["confirmations"]] == ["sent"]
    again = post(client, keyed(auth, "optin-1"), optin)
    assert again.headers["Idempotency-Replayed"] == "true"
    assert again.json() == first.json()  # the mail's outcome, learnt after the commit, is the answer given again
    assert len(list(mail_dir.glob("*.eml"))) == 1
    assert events(database_url) == 1


def test_openapi_says_which_writes_take_a_key(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    taking = sorted(
        f"{method.upper()} {path}"
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in operation["parameters"])
    )
    assert taking == ["POST /v1/subjects/{ref}/consents", "POST /v1/subjects/{ref}/preference-links"]
    responses = document["paths"]["/v1/subjects/{ref}/consents"]["post"]["responses"]
    assert "Idempotency-Key" in responses["409"]["description"]
    assert "Idempotency-Key" in responses["422"]["description"]


def test_a_background_reload_started_by_a_keyed_write_is_not_in_its_transaction(
    client: TestClient, auth: dict[str, str], database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A task inherits its creator's context: the catalogue's reload, started by a stale read inside a keyed write,
    would share the write's connection (on PostgreSQL: 'another operation is in progress', or a 500)."""
    catalog = services_of(client).catalog
    for n in range(5):
        catalog._loaded_at = 0.0  # stale: the next read starts a background reload
        answer = post(client, keyed(auth, f"stale-{n}"), GRANT, ref=f"cust-stale-{n}")
        assert answer.status_code == 201, answer.text
        run(client, _reloaded, catalog)
        assert catalog._loaded_at > 0.0
    assert [r.getMessage() for r in caplog.records if r.name == "server.catalog"] == []


async def _reloaded(catalog: Any) -> None:
    refresh = catalog._refresh
    if refresh is not None:
        await refresh


def test_a_route_that_requires_a_key_refuses_a_request_without_one() -> None:
    async def write(request: Request) -> Response:
        return Response(status_code=204)

    declared = Endpoint("/w", "POST", write, PUBLIC, "a write", "test", idempotency=REQUIRED)
    with pytest.raises(LookupError, match="key store"):
        build_routes([declared], {})
    keys = IdempotencyKeys(timedelta(hours=24), Clock())
    app = Starlette(routes=build_routes([declared], {}, keys), exception_handlers=EXCEPTION_HANDLERS)
    with TestClient(app) as test_client:
        refused = test_client.post("/w")
    assert refused.status_code == 400
    assert refused.json()["type"] == "/problems/invalid-idempotency-key"


def test_the_recipients_are_woken_after_a_keyed_write_commits(
    client: TestClient, auth: dict[str, str], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A withdrawal queues notices; the dispatcher woken before the commit would find none and wait for its poll."""
    run(client, _add_recipient)
    assert post(client, auth, GRANT).status_code == 201
    seen: list[int] = []
    dispatcher = services_of(client).recipients
    monkeypatch.setattr(dispatcher, "wake", lambda: seen.append(_notices(database_url)))
    withdraw = {**GRANT, "decisions": [{"purpose": "offers", "channel": "email", "action": "withdraw"}]}
    assert post(client, keyed(auth, "withdraw-1"), withdraw).status_code == 201
    assert seen == [1]  # woken once, with the notice committed


async def _add_recipient() -> None:
    await registry.add("crm", "https://crm.example/notices", datetime.now(UTC))


def _notices(database_url: str) -> int:
    (row,) = sql(database_url, query="SELECT count(*) FROM recipient_notices")
    return int(row[0])
