"""Property: the check API agrees with a straightforward replay of the subject's own ledger, now and at any instant.

The replay below is written from the rules (invariants 6 and 7, docs/design.md), independently of
`server.consent.decide`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from tests.helpers.api import confirmed_by_import, record
from tests.helpers.clock import Clock

START = datetime(2026, 7, 1, tzinfo=UTC)
V2_IN_FORCE = datetime(2026, 9, 1, tzinfo=UTC)  # privacy-policy v2: material for `partners`
PAIRS = [("offers", "email"), ("offers", "post"), ("partners", "sms"), ("newsletter", "email")]
ACTIONS = ["grant", "deny", "withdraw", "confirm", "object", "expire"]
LEGITIMATE_INTEREST = {("offers", "post")}

steps = st.lists(
    st.tuples(
        st.sampled_from(PAIRS),
        st.sampled_from(ACTIONS),
        st.integers(min_value=1, max_value=60 * 24 * 40),  # minutes after the previous step
        st.sampled_from(["privacy-policy/1/fr", "privacy-policy/2/fr"]),
    ),
    min_size=1,
    max_size=8,
)
probes = st.lists(st.integers(min_value=0, max_value=60 * 24 * 1200), min_size=1, max_size=4)


def expected(events: list[dict[str, Any]], purpose: str, channel: str, at: datetime) -> tuple[bool, str]:
    """What the rules say, from the exported events alone."""
    last = None
    for event in events:
        if (event["purpose"], event["channel"]) == (purpose, channel) and _t(event["recorded_at"]) <= at:
            last = event
    if last is None:
        return (True, "legitimate_interest") if (purpose, channel) in LEGITIMATE_INTEREST else (False, "no_record")
    status = last["status"]
    if status != "granted":
        return False, status if status != "pending_confirmation" else "pending_confirmation"
    if last["valid_until"] and at >= _t(last["valid_until"]):
        return False, "expired"
    if purpose == "partners" and last["policy"]["version"] == "1" and at >= V2_IN_FORCE:
        return False, "reconsent_required"
    return True, "granted"


def _t(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=steps, instants=probes)
# Always tried, whatever the random draw: a v1 grant crossing v2's entry into force, and an expiry crossing.
@example(history=[(("partners", "sms"), "grant", 10, "privacy-policy/1/fr")], instants=[10, 60 * 24 * 100])
@example(history=[(("partners", "sms"), "grant", 10, "privacy-policy/2/fr")], instants=[60 * 24 * 700, 60 * 24 * 800])
def test_check_agrees_with_a_replay_of_the_ledger(
    client: TestClient, auth: dict[str, str], clock: Clock, history: list[Any], instants: list[int]
) -> None:
    ref = f"prop-{uuid.uuid4()}"
    moment = START
    for (purpose, channel), action, minutes, policy in history:
        moment += timedelta(minutes=minutes)
        clock.set(moment)
        decision = [(purpose, channel, action)]
        response = record(client, auth, ref, decision, policy=policy, **confirmed_by_import(decision))
        assert response.status_code in (201, 422), response.text
    events = client.get(f"/v1/subjects/{ref}/events?limit=1000", headers=auth)
    if events.status_code == 404:  # every decision was refused: the subject was never created
        events_list: list[dict[str, Any]] = []
    else:
        events_list = events.json()["events"]
    clock.set(moment + timedelta(days=500))  # "now", after every probe
    for offset in instants:
        at = START + timedelta(minutes=offset)
        for purpose, channel in PAIRS:
            params = {"subject": ref, "purpose": purpose, "channel": channel, "at": at.isoformat()}
            answer = client.get("/v1/consents/check", params=params, headers=auth).json()
            want = expected(events_list, purpose, channel, at)
            if not events_list:
                want = (False, "unknown_subject")
            assert (answer["allowed"], answer["reason"]) == want, (purpose, channel, at, events_list)
    now = clock()
    singles = []
    for purpose, channel in PAIRS:
        answer = client.get(
            "/v1/consents/check", params={"subject": ref, "purpose": purpose, "channel": channel}, headers=auth
        ).json()
        want = expected(events_list, purpose, channel, now) if events_list else (False, "unknown_subject")
        assert (answer["allowed"], answer["reason"]) == want, (purpose, channel, "now", events_list)
        singles.append({"subject": ref, "purpose": purpose, "channel": channel, **answer})
    # Batch and stream compute their answers their own way (server.consent.bulk): the same, field by field.
    questions = [{k: single[k] for k in ("subject", "purpose", "channel")} for single in singles]
    batch = client.post("/v1/consents/check", json={"checks": questions}, headers=auth)
    assert batch.json()["results"] == singles
    stream = client.post(
        "/v1/consents/check/stream",
        content=b"".join(orjson.dumps(q) + b"\n" for q in questions),
        headers={**auth, "Content-Type": "application/x-ndjson"},
    )
    streamed = [orjson.loads(line) for line in stream.content.splitlines()]
    assert streamed == [{"line": n, **single} for n, single in enumerate(singles, 1)]
