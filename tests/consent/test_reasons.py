"""Every `reason` the check API can give, on both databases (default deny: invariant 6, docs/design.md)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from server.models import Subject
from server.policies.sync import sync_policies
from tests.databases import POLICY_DIR
from tests.helpers.api import bearer, confirmed_by_import, record
from tests.helpers.app import run, services_of
from tests.helpers.checks import CASES, PAST, check
from tests.helpers.clock import Clock


def _flag(ref: str, field: str, value: datetime) -> Callable[[], Any]:
    async def apply() -> None:
        await Subject.filter(ref=ref).update(**{field: value})

    return apply


@pytest.mark.parametrize(
    ("name", "decisions", "purpose", "channel", "allowed", "reason"), CASES, ids=[c[0] for c in CASES]
)
def test_reason(
    client: TestClient,
    auth: dict[str, str],
    name: str,
    decisions: list[tuple[str, str, str]],
    purpose: str,
    channel: str,
    allowed: bool,
    reason: str,
) -> None:
    for decision in decisions:
        assert record(client, auth, "subject-1", [decision], **confirmed_by_import([decision])).status_code == 201
    answer = check(client, auth, "subject-1", purpose, channel)
    assert (answer["allowed"], answer["reason"]) == (allowed, reason)
    if reason not in ("no_record", "legitimate_interest", "necessary"):
        assert answer["event_id"] and answer["since"] and answer["policy_version"] == "privacy-policy/2/fr"


def test_unknown_subject(client: TestClient, auth: dict[str, str]) -> None:
    answer = check(client, auth, "nobody", "offers", "email")
    assert answer == {
        "allowed": False,
        "reason": "unknown_subject",
        "status": "no_record",
        "since": None,
        "valid_until": None,
        "policy_version": None,
        "event_id": None,
    }
    # even where the legal basis would allow contact: we know nothing of this person
    assert check(client, auth, "nobody", "offers", "post")["reason"] == "unknown_subject"


def test_erased_and_restricted_override_a_grant(client: TestClient, auth: dict[str, str]) -> None:
    record(client, auth, "erased-1", [("offers", "email", "grant")])
    record(client, auth, "restricted-1", [("offers", "email", "grant")])
    run(client, _flag("erased-1", "erased_at", datetime.now(UTC)))
    run(client, _flag("restricted-1", "restricted_at", datetime.now(UTC)))
    assert check(client, auth, "erased-1", "offers", "email")["reason"] == "erased"
    restricted = check(client, auth, "restricted-1", "offers", "email")
    assert (restricted["allowed"], restricted["reason"]) == (False, "restricted")


def test_an_erasure_or_restriction_dated_after_the_check_does_not_apply_yet(
    client: TestClient, auth: dict[str, str], clock: Clock
) -> None:
    """The rule reads flags as of the check's instant: one dated later (a writer whose clock runs ahead) leaves the
    state to decide, on every path (batch and stream write such rows apart from the common ones)."""
    clock.set(PAST)
    record(client, auth, "later-erased", [("offers", "email", "grant")])
    record(client, auth, "later-restricted", [("offers", "email", "grant"), ("offers", "email", "withdraw")])
    run(client, _flag("later-erased", "erased_at", PAST + timedelta(hours=1)))
    run(client, _flag("later-restricted", "restricted_at", PAST + timedelta(hours=1)))
    assert (check(client, auth, "later-erased", "offers", "email")["reason"]) == "granted"
    assert (check(client, auth, "later-restricted", "offers", "email")["reason"]) == "withdrawn"
    clock.set(PAST + timedelta(hours=1))
    assert (check(client, auth, "later-erased", "offers", "email")["reason"]) == "erased"
    assert (check(client, auth, "later-restricted", "offers", "email")["reason"]) == "restricted"


def test_expiry_is_crossed_at_read_time(client: TestClient, auth: dict[str, str], clock: Clock) -> None:
    clock.set(PAST)
    granted = record(client, auth, "subject-2", [("offers", "email", "grant")]).json()["events"][0]
    valid_until = datetime.fromisoformat(granted["valid_until"])
    assert (valid_until - PAST).days == 1095
    clock.set(valid_until - timedelta(seconds=1))
    assert check(client, auth, "subject-2", "offers", "email")["reason"] == "granted"
    clock.set(valid_until)
    answer = check(client, auth, "subject-2", "offers", "email")
    assert (answer["allowed"], answer["reason"], answer["status"]) == (False, "expired", "granted")


def test_material_version_coming_into_force_requires_reconsent(
    client: TestClient, auth: dict[str, str], clock: Clock
) -> None:
    clock.set(PAST)
    record(
        client,
        auth,
        "subject-3",
        [("partners", "email", "grant"), ("offers", "email", "grant")],
        policy="privacy-policy/1/en",
    )
    assert check(client, auth, "subject-3", "partners", "email")["reason"] == "granted"
    clock.set(datetime(2026, 9, 1, 0, 0, 1, tzinfo=UTC))  # privacy-policy v2 (material for partners) in force
    answer = check(client, auth, "subject-3", "partners", "email")
    assert (answer["allowed"], answer["reason"], answer["policy_version"]) == (
        False,
        "reconsent_required",
        "privacy-policy/1/en",
    )
    # purposes the material version does not list are untouched
    assert check(client, auth, "subject-3", "offers", "email")["reason"] == "granted"
    # consenting again under the new version clears it
    record(client, auth, "subject-3", [("partners", "email", "grant")], policy="privacy-policy/2/en")
    assert check(client, auth, "subject-3", "partners", "email")["reason"] == "granted"


def test_publishing_a_material_version_flips_granted(client: TestClient, auth: dict[str, str], tmp_path: Path) -> None:
    """`policies sync` of a new material version is seen by the check API without restarting anything."""
    record(client, auth, "subject-4", [("partners", "sms", "grant")], policy="privacy-policy/2/fr")
    assert check(client, auth, "subject-4", "partners", "sms")["reason"] == "granted"
    docs = tmp_path / "policy_docs"
    shutil.copytree(POLICY_DIR, docs)
    v3 = docs / "privacy-policy" / "3" / "fr.md"
    v3.parent.mkdir()
    text = (docs / "privacy-policy" / "2" / "fr.md").read_text()
    v3.write_text(
        text.replace('version: "2"', 'version: "3"').replace(
            'effective_at: "2026-09-01T00:00:00Z"', 'effective_at: "2026-10-01T00:00:00Z"'
        )
    )
    run(client, sync_policies, docs)
    run(client, services_of(client).catalog.reload)  # what CATALOG_TTL does within seconds
    answer = check(client, auth, "subject-4", "partners", "sms")
    assert (answer["allowed"], answer["reason"]) == (False, "reconsent_required")


def test_check_refuses_bad_questions(client: TestClient, auth: dict[str, str]) -> None:
    cases = [
        ({"subject": "x", "purpose": "nope", "channel": "email"}, "/problems/unknown-purpose"),
        ({"subject": "x", "purpose": "offers", "channel": "fax"}, "/problems/unknown-channel"),
        ({"subject": "x", "purpose": "newsletter", "channel": "sms"}, "/problems/channel-not-offered"),
        ({"purpose": "offers", "channel": "email"}, "/problems/invalid-request"),
        ({"subject": "a\x00b", "purpose": "offers", "channel": "email"}, "/problems/unstorable-text"),
        ({"subject": "x" * 256, "purpose": "offers", "channel": "email"}, "/problems/invalid-request"),
        ({"subject": "x", "purpose": "offers", "channel": "email", "at": "soon"}, "/problems/invalid-request"),
    ]
    for params, problem_type in cases:
        response = client.get("/v1/consents/check", params=params, headers=auth)
        assert response.status_code == 422, (params, response.text)
        assert response.json()["type"] == problem_type


def test_check_scope_alone_can_check_but_not_read_or_write(client: TestClient) -> None:
    writer = bearer(client, "consent:write")
    record(client, writer, "subject-5", [("offers", "email", "grant")])
    checker = bearer(client, "consent:check")
    assert check(client, checker, "subject-5", "offers", "email")["allowed"] is True
    assert client.get("/v1/subjects/subject-5/events", headers=checker).status_code == 403
    assert client.get("/v1/subjects/subject-5/consents", headers=checker).status_code == 403
    assert record(client, checker, "subject-5", [("offers", "email", "withdraw")]).status_code == 403
    reader = bearer(client, "consent:read")
    assert (
        client.get("/v1/consents/check?subject=subject-5&purpose=offers&channel=email", headers=reader).status_code
        == 403
    )
