"""A question asked about a future instant (`?at=`) applies what is already published for it: a material policy
version published now but coming into force later puts earlier grants of its purposes into re-consent from its
`effective_at` on, in single checks and in the subject's consent matrix alike (invariant 7, docs/design.md)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from server.policies.sync import sync_policies
from tests.databases import POLICY_DIR
from tests.helpers.api import record
from tests.helpers.app import run, services_of
from tests.helpers.clock import Clock

EFFECTIVE = "2027-06-01T00:00:00Z"  # in the future, before the grants expire


def _publish_future_material_version(client: TestClient, tmp_path: Path) -> None:
    docs = tmp_path / "policy_docs"
    shutil.copytree(POLICY_DIR, docs)
    v3 = docs / "privacy-policy" / "3" / "fr.md"
    v3.parent.mkdir()
    text = (docs / "privacy-policy" / "2" / "fr.md").read_text()
    v3.write_text(
        text.replace('version: "2"', 'version: "3"').replace(
            'effective_at: "2026-09-01T00:00:00Z"', f'effective_at: "{EFFECTIVE}"'
        )
    )
    run(client, sync_policies, docs)
    run(client, services_of(client).catalog.reload)


def _check(client: TestClient, auth: dict[str, str], at: str | None) -> dict[str, Any]:
    params = {"subject": "future-1", "purpose": "partners", "channel": "sms", **({"at": at} if at else {})}
    answer = client.get("/v1/consents/check", params=params, headers=auth)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def _matrix(client: TestClient, auth: dict[str, str], at: str) -> dict[tuple[str, str], str]:
    answer = client.get("/v1/subjects/future-1/consents", params={"at": at}, headers=auth)
    assert answer.status_code == 200, answer.text
    return {(c["purpose"], c["channel"]): c["reason"] for c in answer.json()["consents"]}


def test_a_future_at_applies_a_material_version_published_for_a_later_date(
    client: TestClient, auth: dict[str, str], tmp_path: Path, clock: Clock
) -> None:
    clock.set(datetime(2026, 12, 1, tzinfo=UTC))  # before EFFECTIVE, whenever the test runs
    granted = record(client, auth, "future-1", [("partners", "sms", "grant"), ("offers", "sms", "grant")])
    assert granted.status_code == 201, granted.text
    _publish_future_material_version(client, tmp_path)

    assert _check(client, auth, None)["reason"] == "granted", "not in force yet"
    assert _check(client, auth, "2027-05-31T23:59:59Z")["reason"] == "granted"
    after = _check(client, auth, "2027-06-01T00:00:01Z")
    assert (after["allowed"], after["reason"]) == (False, "reconsent_required"), after
    assert _matrix(client, auth, "2027-05-31T23:59:59Z")[("partners", "sms")] == "granted"
    later = _matrix(client, auth, "2027-07-01T00:00:00Z")
    assert later[("partners", "sms")] == "reconsent_required"
    assert later[("offers", "sms")] == "granted", "a purpose the version does not list is untouched"
