"""Recording decisions: chain, projection, refusals with nothing written (invariants 1-5, docs/design.md)."""

from __future__ import annotations

import hashlib
import uuid
from urllib.parse import quote

import pytest
import rfc8785
from starlette.testclient import TestClient

from server.ledger.chain import GENESIS
from server.models import ConsentEvent, ConsentState, Subject
from tests.helpers.api import record
from tests.helpers.app import run


async def _counts() -> tuple[int, int, int]:
    return await Subject.all().count(), await ConsentEvent.all().count(), await ConsentState.all().count()


def test_grant_then_read_back_chain_and_matrix(client: TestClient, auth: dict[str, str]) -> None:
    response = record(
        client,
        auth,
        "cust-42",
        [("offers", "email", "grant"), ("offers", "sms", "deny")],
        evidence={"ip": "203.0.113.7", "user_agent": "Mozilla/5.0"},
    )
    assert response.status_code == 201, response.text
    events = response.json()["events"]
    assert [e["seq"] for e in events] == [1, 2]
    assert events[0]["prev_hash"] == GENESIS
    assert events[1]["prev_hash"] == events[0]["hash"]
    assert [e["status"] for e in events] == ["granted", "refused"]
    assert events[0]["policy_version"] == "privacy-policy/2/fr"
    # Event ids are time-ordered (server.ids): version 7, in the order the events were recorded.
    event_ids = [uuid.UUID(e["id"]) for e in events]
    assert [i.version for i in event_ids] == [7, 7] and event_ids == sorted(event_ids)

    matrix = client.get("/v1/subjects/cust-42/consents", headers=auth).json()
    by_key = {(c["purpose"], c["channel"]): c for c in matrix["consents"]}
    assert by_key[("offers", "email")]["allowed"] is True
    assert by_key[("offers", "sms")]["reason"] == "refused"
    assert by_key[("newsletter", "email")]["reason"] == "no_record"


def test_exported_event_hash_recomputes_without_our_code(client: TestClient, auth: dict[str, str]) -> None:
    """Invariant 4 (docs/design.md): SHA-256 over RFC 8785 JSON of every field but `hash`."""
    record(client, auth, "cust-1", [("offers", "email", "grant")], evidence={"ip": "2001:db8:1:2::7"})
    record(client, auth, "cust-1", [("offers", "email", "withdraw")])
    events = client.get("/v1/subjects/cust-1/events", headers=auth).json()["events"]
    previous = GENESIS
    for event in events:
        body = {k: v for k, v in event.items() if k != "hash"}
        assert body["prev_hash"] == previous
        assert hashlib.sha256(rfc8785.dumps(body)).hexdigest() == event["hash"]
        previous = event["hash"]
    # Invariant 9 (docs/design.md): the IP is truncated, the subject is a pseudonym, never the ref.
    assert events[0]["evidence"]["ip"] == "2001:db8:1::/48"
    assert events[0]["subject"] != "cust-1" and len(events[0]["subject"]) == 64


def test_double_opt_in_grant_is_pending_until_confirmed(client: TestClient, auth: dict[str, str]) -> None:
    first = record(client, auth, "cust-2", [("newsletter", "email", "grant")]).json()["events"][0]
    assert first["status"] == "pending_confirmation"
    # The confirmation is the person's click on the mailed link (tests/preference_center/test_mail.py); a client
    # records one only as an import of a confirmation collected elsewhere.
    by_client = record(client, auth, "cust-2", [("newsletter", "email", "confirm")])
    assert by_client.status_code == 422 and by_client.json()["type"] == "/problems/confirmation-by-link-only"
    assert client.get("/problems/confirmation-by-link-only").status_code == 200
    imported = record(client, auth, "cust-2", [("newsletter", "email", "confirm")], touchpoint="import")
    second = imported.json()["events"][0]
    assert second["status"] == "granted" and second["valid_until"] is not None


def test_refusals_write_nothing(client: TestClient, auth: dict[str, str]) -> None:
    record(client, auth, "cust-3", [("offers", "email", "grant")])
    before = run(client, _counts)
    cases = [
        ([("nope", "email", "grant")], "privacy-policy/2/fr", "/problems/unknown-purpose"),
        ([("offers", "fax", "grant")], "privacy-policy/2/fr", "/problems/unknown-channel"),
        ([("newsletter", "sms", "grant")], "privacy-policy/2/fr", "/problems/channel-not-offered"),
        ([("offers", "email", "grant")], "privacy-policy/9/fr", "/problems/unknown-policy-version"),
        ([("offers", "email", "grant")], "privacy-policy/2/de", "/problems/unknown-policy-version"),
        # the first decision is fine, the second is not: the whole call is refused (one transaction)
        (
            [("offers", "sms", "grant"), ("offers", "email", "confirm")],
            "privacy-policy/2/fr",
            "/problems/invalid-transition",
        ),
        ([("offers", "email", "deny")], "privacy-policy/2/fr", "/problems/invalid-transition"),
        ([("offers", "post", "withdraw")], "privacy-policy/2/fr", "/problems/invalid-transition"),
        # a new subject whose only decision is refused is not created either
    ]
    for decisions, policy, problem_type in cases:
        response = record(client, auth, "cust-3", decisions, policy=policy, touchpoint="import")
        assert response.status_code == 422, (decisions, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"] == problem_type
    response = record(client, auth, "brand-new", [("offers", "email", "confirm")], touchpoint="import")
    assert response.status_code == 422 and response.json()["type"] == "/problems/invalid-transition"
    assert run(client, _counts) == before


def test_soft_opt_in_is_limited_to_own_marketing_by_email_or_sms(client: TestClient, auth: dict[str, str]) -> None:
    ok = record(client, auth, "cust-4", [("offers", "email", "soft_opt_in")])
    assert ok.status_code == 201 and ok.json()["events"][0]["status"] == "soft_opt_in"
    third_party = record(client, auth, "cust-4", [("partners", "email", "soft_opt_in")])
    assert third_party.json()["type"] == "/problems/invalid-transition"
    # after a refusal, soft opt-in cannot silently switch the basis back on
    record(client, auth, "cust-5", [("offers", "sms", "deny")])
    assert record(client, auth, "cust-5", [("offers", "sms", "soft_opt_in")]).status_code == 422


@pytest.mark.parametrize("ref", ["cust-6", "q€ a?#"])  # a ref outside Latin-1, with a space and URI delimiters
def test_events_are_paginated_with_a_cursor(client: TestClient, auth: dict[str, str], ref: str) -> None:
    for _ in range(5):
        record(client, auth, quote(ref, safe=""), [("offers", "email", "grant")])
    seen = []
    url = f"/v1/subjects/{quote(ref, safe='')}/events?limit=2"
    while url:
        response = client.get(url, headers=auth)
        page = response.json()
        assert page["subject"] == ref
        seen += [e["seq"] for e in page["events"]]
        link = response.headers.get("link")
        assert (link is None) == (page["next_cursor"] is None), link
        url = ""
        if link is not None:  # the next page, as RFC 8288 gives it: a URI, the ref percent-encoded
            url = link.removeprefix("<").removesuffix('>; rel="next"')
            assert url.isascii() and " " not in url, link
            assert url.endswith(f"cursor={page['next_cursor']}"), link
    assert seen == [1, 2, 3, 4, 5]
    assert client.get("/v1/subjects/cust-6/events?cursor=zzz", headers=auth).status_code == 422
    assert client.get("/v1/subjects/nobody/events", headers=auth).status_code == 404


def test_point_in_time_matrix_is_derived_from_the_ledger(client: TestClient, auth: dict[str, str], clock) -> None:
    from datetime import UTC, datetime

    clock.set(datetime(2026, 10, 1, 12, tzinfo=UTC))
    record(client, auth, "cust-7", [("offers", "email", "grant")])
    clock.advance(days=1)
    record(client, auth, "cust-7", [("offers", "email", "withdraw")])

    def offers_email(at: str | None) -> dict:
        query = f"?at={at}" if at else ""
        matrix = client.get(f"/v1/subjects/cust-7/consents{query}", headers=auth).json()
        return next(c for c in matrix["consents"] if (c["purpose"], c["channel"]) == ("offers", "email"))

    assert offers_email("2026-10-01T11:00:00Z")["reason"] == "no_record"
    assert offers_email("2026-10-01T18:00:00Z")["reason"] == "granted"
    assert offers_email("2026-10-02T18:00:00Z")["reason"] == "withdrawn"
    assert offers_email(None)["reason"] == "withdrawn"
    assert client.get("/v1/subjects/cust-7/consents?at=yesterday", headers=auth).status_code == 422
    assert client.get("/v1/subjects/cust-7/consents?at=2026-10-01T11:00:00", headers=auth).status_code == 422


def test_a_client_vouches_only_for_its_own_provenance(client: TestClient, auth: dict[str, str]) -> None:
    """The record says where a decision came from and who recorded it. A client may say its own systems (api), its
    call centre (agent) or an import; the service's own surfaces record theirs, and the client is always named."""
    before = run(client, _counts)
    for touchpoint in ("preference_center", "banner", "unsubscribe", "gpc", "system"):
        refused = record(client, auth, "cust-p", [("offers", "sms", "grant")], touchpoint=touchpoint)
        assert refused.status_code == 422 and refused.json()["type"] == "/problems/invalid-request", touchpoint
        assert refused.json()["errors"][0]["location"] == "touchpoint"
    for body in ({"actor_id": "desk-7"}, {"touchpoint": "import", "actor_id": "desk-7"}, {"actor_id": "x" * 65}):
        refused = record(client, auth, "cust-p", [("offers", "sms", "grant")], **body)
        assert refused.status_code == 422 and refused.json()["errors"][0]["location"] == "actor_id", body
    assert run(client, _counts) == before  # nothing written, no subject created

    assert record(client, auth, "cust-p", [("offers", "sms", "grant")]).status_code == 201
    by_phone = {"touchpoint": "agent", "actor_id": "desk-7"}
    assert record(client, auth, "cust-p", [("offers", "email", "grant")], **by_phone).status_code == 201
    assert record(client, auth, "cust-p", [("offers", "phone", "grant")], touchpoint="agent").status_code == 201
    events = client.get("/v1/subjects/cust-p/events", headers=auth).json()["events"]
    own, agent, unnamed_agent = (event["actor"] for event in events)
    assert own["type"] == "client" and own["id"].startswith("cl_")
    assert agent == {"type": "agent", "id": f"{own['id']}/desk-7"}  # the client that vouches for its agent
    assert unnamed_agent == {"type": "agent", "id": own["id"]}
    assert [event["touchpoint"] for event in events] == ["api", "agent", "agent"]
