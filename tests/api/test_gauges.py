"""`/metrics` tells an operator what to alert on: events waiting for a checkpoint, the latest checkpoint's age,
notices to recipients, data-subject requests past their due date, background jobs nobody runs; and says so when the
database cannot be read, instead of failing the scrape."""

from __future__ import annotations

import re
from datetime import timedelta

from starlette.testclient import TestClient

from server.console.desk import Desk
from tests.helpers.api import bearer, record
from tests.helpers.app import run, services_of
from tests.helpers.sql import sql


def gauges(client: TestClient) -> dict[str, float]:
    """The `consent_*` samples of /metrics, read afresh, by name with their labels."""
    client.app.state.gauges.ttl_s = 0  # type: ignore[attr-defined]
    answer = client.get("/metrics")
    assert answer.status_code == 200, answer.text
    samples = re.findall(r"^(consent_\S+) (\S+)$", answer.text, re.MULTILINE)
    return {name: float(value) for name, value in samples}


def test_the_gauges_follow_the_ledger_the_log_and_the_requests(client: TestClient, database_url: str) -> None:
    before = gauges(client)
    assert before["consent_service_gauges_up"] == 1
    assert before["consent_log_unsequenced_events"] == 0
    assert before['consent_dsr_requests{state="overdue"}'] == 0

    headers = bearer(client)
    answer = record(client, headers, "cust-gauge", [("offers", "email", "grant"), ("offers", "sms", "grant")])
    assert answer.status_code == 201, answer.text
    assert gauges(client)["consent_log_unsequenced_events"] == 2

    run(client, services_of(client).log.checkpoint)
    after = gauges(client)
    assert after["consent_log_unsequenced_events"] == 0
    assert after["consent_log_tree_size"] >= 2
    assert 0 <= after["consent_log_checkpoint_age_seconds"] < 60

    desk: Desk = client.app.state.desk  # type: ignore[attr-defined]
    today = desk.today()

    async def open_requests() -> None:
        await desk.requests.open_request("cust-gauge", "access", "agent", received=today - timedelta(days=40))
        await desk.requests.open_request("cust-gauge", "rectification", "agent")

    run(client, open_requests)
    requests = gauges(client)
    assert requests['consent_dsr_requests{state="open"}'] == before['consent_dsr_requests{state="open"}'] + 2
    assert requests['consent_dsr_requests{state="overdue"}'] == 1


def test_a_background_job_nobody_holds_shows_below_zero(client: TestClient, database_url: str) -> None:
    sql(
        database_url,
        "INSERT INTO leases (name, holder, term, expires_at) VALUES ('checkpoints', 'gone/1/x', 3, 1.0)",
    )
    assert gauges(client)['consent_background_job_lease_remaining_seconds{job="checkpoints"}'] < 0


def test_a_database_that_cannot_be_read_is_a_gauge_not_a_failed_scrape(client: TestClient, database_url: str) -> None:
    sql(database_url, "ALTER TABLE log_queue RENAME TO log_queue_away")
    try:
        seen = gauges(client)
    finally:
        sql(database_url, "ALTER TABLE log_queue_away RENAME TO log_queue")
    assert seen == {"consent_service_gauges_up": 0.0}
