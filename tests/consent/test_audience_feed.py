"""The audience change feed keeps a marketing system's copy of an audience equal to the export.

A copy starts from a full export (`GET /v1/audiences/{purpose}/{channel}`) and is kept up to date by polling
`?since=<X-Next-Since of the previous read>`: each line sets one subject's answer. After every kind of change that
can move a subject in or out of an audience (a decision, a new subject where the basis needs no consent, an
objection, a restriction and its lifting through the service desk, a material policy version coming into force, a
re-consent, an expiry crossed at read time, an erasure), the copy must equal a fresh export, and both must equal the
audience the test expects. A change committed just after a read, with an instant before it, must still reach the
next poll; and a decision that cannot be committed in time for that is not kept at all (`server.visibility`).
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from server.models import PolicyVersion
from server.policies.sync import sync_policies
from server.settings import Settings
from server.visibility import FEED_OVERLAP, WRITE_WINDOW
from tests.databases import POLICY_DIR
from tests.helpers.api import record
from tests.helpers.app import run, services_of
from tests.helpers.audience import Copy
from tests.helpers.clock import StepClock
from tests.helpers.console import check, new_staff, open_via_console, post, set_contact, sign_in

PAST = datetime(2026, 8, 1, 9, tzinfo=UTC)  # before privacy-policy v2 (material for partners) came into force
V2_IN_FORCE = datetime(2026, 9, 1, 0, 0, 1, tzinfo=UTC)
OFFERS_EMAIL, OFFERS_POST, PARTNERS_EMAIL = ("offers", "email"), ("offers", "post"), ("partners", "email")
PAIRS = (OFFERS_EMAIL, OFFERS_POST, PARTNERS_EMAIL)  # consent, legitimate interest, consent with a material version


@pytest.fixture
def clock() -> StepClock:
    return StepClock()


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    """The desk mails its notices (restriction, erasure) to a per-test outbox."""
    return settings.with_overrides(mail_dir=tmp_path / "mail")


def _fresh_export(client: TestClient, auth: dict[str, str], pair: tuple[str, str]) -> set[str]:
    return Copy(pair).export(client, auth)


def _published_when_in_force(client: TestClient) -> None:
    """The test database's policies were synced today, in real time; this test's clock runs in 2026. Date each
    publication at its `effective_at`, as if each version had been published on time."""

    async def backdate() -> None:
        for version in await PolicyVersion.all():
            await PolicyVersion.filter(id=version.id).update(published_at=version.effective_at)

    run(client, backdate)
    run(client, services_of(client).catalog.reload)


def test_a_copy_kept_by_polling_the_feed_equals_the_export_after_every_kind_of_change(
    client: TestClient, auth: dict[str, str], clock: StepClock
) -> None:
    clock.set(PAST)
    _published_when_in_force(client)
    copies = {pair: Copy(pair) for pair in PAIRS}
    for copy in copies.values():
        assert copy.export(client, auth) == set()
    supervisor = new_staff(client, "supervisor")
    state: dict[str, Any] = {}

    def grants() -> None:
        for ref in ("ana", "ben"):
            decisions = [("offers", "email", "grant"), ("partners", "email", "grant")]
            assert record(client, auth, ref, decisions, policy="privacy-policy/1/en").status_code == 201
            set_contact(client, ref, email=f"{ref}@example.org", locale="en")

    def a_new_subject() -> None:  # allowed on offers/post (legitimate interest) without a decision for it
        assert record(client, auth, "cyd", [("offers", "sms", "grant")]).status_code == 201
        set_contact(client, "cyd", email="cyd@example.org", locale="en")

    def withdrawal() -> None:
        assert record(client, auth, "ben", [("offers", "email", "withdraw")]).status_code == 201

    def objection() -> None:
        assert record(client, auth, "ben", [("offers", "post", "object")]).status_code == 201

    def restriction() -> None:
        csrf = sign_in(client, email=supervisor.email)
        state["restriction"] = open_via_console(client, csrf, "ana", "restriction")
        assert post(client, csrf, f"/console/requests/{state['restriction']}/fulfil").status_code == 303

    def lifting() -> None:
        csrf = sign_in(client, email=supervisor.email)
        base = f"/console/requests/{state['restriction']}"
        told = {"lift_on": clock().date().isoformat(), "reason": "checked"}
        assert post(client, csrf, f"{base}/restriction-notice", told).status_code == 303
        assert post(client, csrf, f"{base}/restriction-lift").status_code == 303

    def material_version_in_force() -> None:  # ana's and ben's partners grants were given under version 1
        clock.set(V2_IN_FORCE)

    def reconsent() -> None:
        assert record(client, auth, "ana", [("partners", "email", "grant")]).status_code == 201

    def expiry() -> None:  # ana's offers/email grant (three years) runs out; no job runs, no event is written
        answer = check(client, auth, "ana", "offers", "email")
        clock.set(datetime.fromisoformat(answer["valid_until"]))

    def erasure() -> None:
        csrf = sign_in(client, email=supervisor.email)
        request_id = open_via_console(client, csrf, "cyd", "erasure")
        answer = post(client, csrf, f"/console/requests/{request_id}/fulfil", {"confirm": "yes"})
        assert answer.status_code == 303, answer.text

    # (change, then the audiences expected: offers/email, offers/post, partners/email)
    steps = [
        (grants, {"ana", "ben"}, {"ana", "ben"}, {"ana", "ben"}),
        (a_new_subject, {"ana", "ben"}, {"ana", "ben", "cyd"}, {"ana", "ben"}),
        (withdrawal, {"ana"}, {"ana", "ben", "cyd"}, {"ana", "ben"}),
        (objection, {"ana"}, {"ana", "cyd"}, {"ana", "ben"}),
        (restriction, set(), {"cyd"}, {"ben"}),
        (lifting, {"ana"}, {"ana", "cyd"}, {"ana", "ben"}),
        (material_version_in_force, {"ana"}, {"ana", "cyd"}, set()),
        (reconsent, {"ana"}, {"ana", "cyd"}, {"ana"}),
        (expiry, set(), {"ana", "cyd"}, set()),  # partners grants last two years: ana's re-consent ran out too
        (erasure, set(), {"ana"}, set()),
    ]
    for change, *expected in steps:
        change()
        clock.advance(minutes=10)
        for (pair, copy), audience in zip(copies.items(), expected, strict=True):
            lines = copy.poll(client, auth)  # the copy began empty: every member it has came from the feed
            assert copy.refs == _fresh_export(client, auth, pair) == audience, (change.__name__, pair, lines)
            if change is withdrawal and pair != OFFERS_EMAIL:  # a poll carries what changed, nothing older
                assert lines == [], (pair, lines)

    # Nothing changed since: a poll past the overlap reads nothing, however many subjects there are.
    clock.advance(minutes=10)
    for copy in copies.values():
        copy.poll(client, auth)
        clock.advance(seconds=1)
        assert copy.poll(client, auth) == [], copy.pair


def test_a_change_committed_just_after_a_read_reaches_the_next_poll(
    client: TestClient, auth: dict[str, str], clock: StepClock
) -> None:
    now = PAST + timedelta(days=1)
    clock.set(now - timedelta(minutes=5))
    assert record(client, auth, "dan", [("offers", "email", "grant")]).status_code == 201
    clock.set(now)
    copy = Copy(OFFERS_EMAIL)
    assert copy.export(client, auth) == {"dan"}
    cursor = datetime.fromisoformat(copy.cursor)
    # A withdrawal whose transaction read the clock before that export but committed after it, within the window.
    clock.set(now - WRITE_WINDOW + timedelta(seconds=1))
    assert record(client, auth, "dan", [("offers", "email", "withdraw")]).status_code == 201
    clock.set(now + timedelta(minutes=1))
    assert copy.poll(client, auth) == [{"ref": "dan", "allowed": False, "reason": "withdrawn"}]
    assert copy.refs == set()
    assert cursor == now - FEED_OVERLAP  # what let the poll see it: a cursor of `now` would have missed it


def test_a_material_version_published_back_dated_reaches_the_next_poll(
    client: TestClient, auth: dict[str, str], clock: StepClock, tmp_path: Path
) -> None:
    """A material version synced with an `effective_at` before the copy's cursor: the grants it makes stale were not
    in any earlier poll, so the next one must carry them, though the version came into force before its cursor."""
    real = datetime.now(UTC).replace(microsecond=0)
    clock.set(real - timedelta(days=1))
    assert record(client, auth, "gus", [("partners", "sms", "grant")]).status_code == 201
    clock.set(real - timedelta(hours=2))
    copy = Copy(("partners", "sms"))
    assert copy.export(client, auth) == {"gus"}
    docs = tmp_path / "policy_docs"
    shutil.copytree(POLICY_DIR, docs)
    text = (docs / "privacy-policy" / "2" / "fr.md").read_text()
    back_dated = (real - timedelta(hours=3)).isoformat().replace("+00:00", "Z")
    (docs / "privacy-policy" / "3").mkdir()
    (docs / "privacy-policy" / "3" / "fr.md").write_text(
        text.replace('version: "2"', 'version: "3"').replace("2026-09-01T00:00:00Z", back_dated)
    )
    run(client, sync_policies, docs)  # published now, in force since three hours ago
    run(client, services_of(client).catalog.reload)
    clock.set(real + timedelta(minutes=1))
    assert check(client, auth, "gus", "partners", "sms")["reason"] == "reconsent_required"
    assert copy.poll(client, auth) == [{"ref": "gus", "allowed": False, "reason": "reconsent_required"}]
    assert copy.refs == _fresh_export(client, auth, ("partners", "sms")) == set()


def test_a_change_of_legal_basis_reaches_the_next_poll(
    client: TestClient, auth: dict[str, str], clock: StepClock, tmp_path: Path
) -> None:
    """Post offers become consent-based: a subject who never decided was allowed on legitimate interest and no
    longer is, though nothing was recorded for them."""
    real = datetime.now(UTC).replace(microsecond=0)
    clock.set(real - timedelta(days=1))
    assert record(client, auth, "hal", [("offers", "email", "grant")]).status_code == 201
    clock.set(real - timedelta(hours=1))
    copy = Copy(OFFERS_POST)
    assert copy.export(client, auth) == {"hal"}
    docs = tmp_path / "policy_docs"
    shutil.copytree(POLICY_DIR, docs)
    declared = (docs / "purposes.yaml").read_text()
    assert declared.count("channel_basis: {post: legitimate_interest}") == 1
    (docs / "purposes.yaml").write_text(
        declared.replace("channel_basis: {post: legitimate_interest}", "channel_basis: {}")
    )
    run(client, sync_policies, docs)
    run(client, services_of(client).catalog.reload)
    clock.set(real + timedelta(minutes=1))
    assert check(client, auth, "hal", "offers", "post")["reason"] == "no_record"
    assert copy.poll(client, auth) == [{"ref": "hal", "allowed": False, "reason": "no_record"}]
    assert copy.refs == _fresh_export(client, auth, OFFERS_POST) == set()


def test_a_decision_that_outlasts_the_write_window_is_not_kept(
    client: TestClient, auth: dict[str, str], clock: StepClock
) -> None:
    clock.set(PAST)
    assert record(client, auth, "eve", [("offers", "email", "grant")]).status_code == 201
    clock.step = WRITE_WINDOW + timedelta(seconds=1)  # each reading of the clock a window later: a slow transaction
    slow = record(client, auth, "eve", [("offers", "email", "withdraw")])
    assert slow.status_code == 503, slow.text
    assert slow.json()["type"] == "/problems/write-window-exceeded"
    assert slow.headers["retry-after"] == "1"
    explained = client.get("/problems/write-window-exceeded")
    assert explained.status_code == 200 and "Send the same request again" in explained.text
    assert f"{WRITE_WINDOW.total_seconds():.0f} seconds" in explained.text
    assert FEED_OVERLAP.total_seconds() == 60 and "the last minute" in explained.text
    late = record(client, auth, "fay", [("offers", "email", "grant")])
    assert late.status_code == 503, late.text
    clock.step = None
    # Nothing of either was kept: eve's grant stands, fay is still unknown, and eve's chain goes on from its head.
    assert check(client, auth, "eve", "offers", "email")["reason"] == "granted"
    assert check(client, auth, "fay", "offers", "email")["reason"] == "unknown_subject"
    assert record(client, auth, "eve", [("offers", "email", "withdraw")]).status_code == 201
    events = client.get("/v1/subjects/eve/events", headers=auth)
    assert events.status_code == 200, events.text
    assert [e["action"] for e in events.json()["events"]] == ["grant", "withdraw"]
