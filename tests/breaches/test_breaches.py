"""The breach register (GDPR 33 and 34) through the console, on both databases: the 72-hour clock, the notification
and its reasons for a delay, the people concerned, the trail of every change, closing, and what each role may do."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import pytest
from starlette.testclient import TestClient
from tortoise import connections

from server.models import AccessLog, Breach, BreachEntry
from server.settings import Settings
from tests.helpers.app import run
from tests.helpers.busy import sqlite_write_lock_held
from tests.helpers.clock import Clock
from tests.helpers.console import count, fetch, post, sign_in

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # 10:00 in Paris, where the demo controller is (FR)


def _facts(**overrides: str) -> dict[str, str]:
    return {
        "title": "Export of the newsletter list left on a public link",
        "aware_at": "2026-11-02T08:30",  # Paris time: 07:30 UTC
        "occurred_from": "2026-10-30T14:00",
        "kind_confidentiality": "yes",
        "description": "A CSV export of newsletter subscribers was reachable by anyone holding its link.",
        "data_categories": "email addresses, consent history",
        "subject_categories": "newsletter subscribers",
        "subjects_estimate": "12,500",
        "records_estimate": "12 500",
        "consequences": "Unsolicited email, phishing attempts.",
        "measures": "",
        "risk": "unassessed",
        **overrides,
    }


def _record(client: TestClient, csrf: str | None, **overrides: str) -> int:
    answer = post(client, csrf, "/console/breaches", _facts(**overrides))
    assert answer.status_code == 303, answer.text
    found = re.fullmatch(r"/console/breaches/(\d+)\?done=recorded", answer.headers["location"])
    assert found, answer.headers["location"]
    return int(found.group(1))


def _version(client: TestClient, breach_id: int) -> str:
    return str(fetch(client, Breach, id=breach_id).version)


def _step(client: TestClient, csrf: str | None, breach_id: int, step: str, **data: str) -> Any:
    path = f"/console/breaches/{breach_id}" + (f"/{step}" if step else "")
    return post(client, csrf, path, {"version": _version(client, breach_id), **data})


def _trail(client: TestClient, breach_id: int) -> list[dict[str, Any]]:
    async def work() -> list[dict[str, Any]]:
        return list(await BreachEntry.filter(breach_id=breach_id).order_by("id").values("action", "changes", "note"))

    return run(client, work)


@pytest.fixture
def supervisor(client: TestClient, clock: Clock) -> str | None:
    clock.set(T0)
    return sign_in(client, "supervisor")


def test_a_breach_is_recorded_with_its_72_hour_clock(client: TestClient, clock: Clock, supervisor: str) -> None:
    breach_id = _record(client, supervisor)
    breach = fetch(client, Breach, id=breach_id)
    assert breach.aware_at == datetime(2026, 11, 2, 7, 30, tzinfo=UTC)  # entered in Paris time, kept in UTC
    assert (breach.subjects_estimate, breach.records_estimate, breach.kinds) == (12_500, 12_500, ["confidentiality"])
    page = client.get(f"/console/breaches/{breach_id}?done=recorded")
    assert page.status_code == 200
    assert "Its 72 hours run from when you became aware of it." in page.text
    assert "70 h left" in page.text and "by 2026-11-05 07:30 UTC" in page.text  # aware 07:30 UTC, now 09:00
    register = client.get("/console/breaches")
    assert "0 overdue, 1 with the clock running" in register.text
    clock.set(datetime(2026, 11, 5, 8, 0, tzinfo=UTC))  # half an hour past the 72 hours
    register = client.get("/console/breaches")
    assert "1 overdue, 0 with the clock running" in register.text
    assert "overdue by 1 h" in register.text
    assert _trail(client, breach_id)[0]["action"] == "recorded"


def test_a_notification_after_72_hours_needs_the_reasons_for_the_delay(
    client: TestClient, clock: Clock, supervisor: str
) -> None:
    """Recorded even before the risk is assessed (33(4): in phases), but never late without its reasons."""
    breach_id = _record(client, supervisor)
    clock.set(datetime(2026, 11, 6, 9, 0, tzinfo=UTC))
    late = _step(client, supervisor, breach_id, "notified", authority_notified_at="2026-11-06T09:30")
    assert late.status_code == 422 and "reasons for the delay" in late.text
    assert fetch(client, Breach, id=breach_id).authority_notified_at is None
    future = _step(client, supervisor, breach_id, "notified", authority_notified_at="2026-11-07T09:30")
    assert future.status_code == 422 and "must be between 2000 and now" in future.text
    done = _step(
        client,
        supervisor,
        breach_id,
        "notified",
        authority_notified_at="2026-11-06T09:30",  # Paris: 08:30 UTC, past 2026-11-05 07:30 UTC
        authority_reference="CNIL-2026-1234",
        late_reason="The extent was only known once the hosting provider sent its logs.",
    )
    assert done.status_code == 303
    breach = fetch(client, Breach, id=breach_id)
    assert breach.authority_notified_at == datetime(2026, 11, 6, 8, 30, tzinfo=UTC)
    page = client.get(f"/console/breaches/{breach_id}")
    assert "notified 2026-11-06 08:30" in page.text and "after 72 h" in page.text and "CNIL-2026-1234" in page.text
    again = _step(client, supervisor, breach_id, "notified", authority_notified_at="2026-11-06T09:40")
    assert again.status_code == 422 and "already notified" in again.text


def test_every_change_keeps_the_old_values_and_a_stale_form_is_refused(
    client: TestClient, supervisor: str, backend: str
) -> None:
    breach_id = _record(client, supervisor)
    version = _version(client, breach_id)
    changed = post(
        client,
        supervisor,
        f"/console/breaches/{breach_id}",
        {**_facts(subjects_estimate="13000", risk="high"), "version": version, "note": "Full count from the logs."},
    )
    assert changed.status_code == 303
    stale = post(client, supervisor, f"/console/breaches/{breach_id}", {**_facts(risk="unlikely"), "version": version})
    assert stale.status_code == 409 and "Someone changed this breach" in stale.text
    assert fetch(client, Breach, id=breach_id).risk == "high"
    unchanged = _step(client, supervisor, breach_id, "", **_facts(subjects_estimate="13000", risk="high"))
    assert unchanged.status_code == 422 and "Nothing changed" in unchanged.text
    trail = _trail(client, breach_id)
    assert [entry["action"] for entry in trail] == ["recorded", "updated"]
    assert trail[1]["changes"] == {"subjects_estimate": [12_500, 13_000], "risk": ["unassessed", "high"]}
    assert trail[1]["note"] == "Full count from the logs."
    page = client.get(f"/console/breaches/{breach_id}")
    assert "People concerned (approx.): 12500 &rarr; 13000" in page.text
    assert "to be told without undue delay" in page.text

    for statement in ("UPDATE breach_history SET note = 'rewritten'", "DELETE FROM breach_history"):

        async def tamper(sql: str = statement) -> None:
            await connections.get("default").execute_query(sql)

        with pytest.raises(Exception, match="append-only"):
            run(client, tamper)
    assert _trail(client, breach_id)[1]["note"] == "Full count from the logs."


def _other_process_writes(database_url: str, breach_id: int, began: threading.Event, hold_s: float) -> None:
    """Another process's connection: it changes the breach in a transaction it holds open `hold_s` seconds."""
    sql = "UPDATE breaches SET title = 'Changed elsewhere', version = version + 1 WHERE id = "
    if database_url.startswith("sqlite://"):
        conn = sqlite3.connect(database_url.removeprefix("sqlite://"), isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(sql + "?", (breach_id,))
        began.set()
        time.sleep(hold_s)
        conn.execute("COMMIT")
        conn.close()
        return

    async def work() -> None:
        conn = await asyncpg.connect(database_url.replace("postgres://", "postgresql://", 1))
        async with conn.transaction():
            await conn.execute(sql + "$1", breach_id)
            began.set()
            await asyncio.sleep(hold_s)
        await conn.close()

    asyncio.run(work())


def test_a_change_made_meanwhile_by_another_process_gives_the_stale_answer(
    client: TestClient, supervisor: str, settings: Settings
) -> None:
    """The console's change waits for a writer in another process (a CLI, a second server) and then answers 409:
    on SQLite, reading the breach before taking the write lock made this a "database is locked" 500."""
    breach_id = _record(client, supervisor)
    version = _version(client, breach_id)
    began = threading.Event()
    other = threading.Thread(target=_other_process_writes, args=(settings.database_url, breach_id, began, 0.5))
    other.start()
    try:
        assert began.wait(10)
        answer = post(client, supervisor, f"/console/breaches/{breach_id}", {**_facts(risk="high"), "version": version})
    finally:
        other.join()
    assert answer.status_code == 409 and "Someone changed this breach" in answer.text
    breach = fetch(client, Breach, id=breach_id)
    assert (breach.title, breach.risk, breach.version) == ("Changed elsewhere", "unassessed", int(version) + 1)
    assert [entry["action"] for entry in _trail(client, breach_id)] == ["recorded"]


@pytest.mark.parametrize("backend", ["sqlite"])  # SQLite's one write lock; PostgreSQL waits for the row
def test_a_change_that_cannot_get_the_lock_says_so_and_changes_nothing(
    client: TestClient, supervisor: str, settings: Settings
) -> None:
    """Another process holds SQLite's write lock past the busy timeout: the supervisor gets a page saying the
    change did not go through (503), not a JSON problem; the same form sent again is kept."""
    breach_id = _record(client, supervisor)
    version = _version(client, breach_id)

    form = {**_facts(risk="high"), "version": version}
    with sqlite_write_lock_held(client, settings):
        busy = post(client, supervisor, f"/console/breaches/{breach_id}", form)
    assert busy.status_code == 503 and "did not go through. Send it again." in busy.text
    assert busy.headers["retry-after"] == "1"
    assert busy.headers["content-type"].startswith("text/html")
    assert fetch(client, Breach, id=breach_id).risk == "unassessed"
    assert post(client, supervisor, f"/console/breaches/{breach_id}", form).status_code == 303
    assert fetch(client, Breach, id=breach_id).risk == "high"


def test_closing_needs_every_duty_done_and_reopening_a_reason(client: TestClient, supervisor: str) -> None:
    breach_id = _record(client, supervisor, risk="high")
    refused = _step(client, supervisor, breach_id, "close")
    assert refused.status_code == 422
    for duty in ("notification to the supervisory authority", "people concerned were told", "measures taken"):
        assert duty in refused.text
    both = _step(
        client,
        supervisor,
        breach_id,
        "told",
        subjects_informed_at="2026-11-02T09:55",
        no_communication_reason="encrypted",
    )
    assert both.status_code == 422 and "not both" in both.text
    assert _step(client, supervisor, breach_id, "told", subjects_informed_at="2026-11-02T09:55").status_code == 303
    assert _step(client, supervisor, breach_id, "notified", authority_notified_at="2026-11-02T09:58").status_code == 303
    measures = "Link revoked; exports now expire after one hour."
    assert _step(client, supervisor, breach_id, "", **_facts(risk="high", measures=measures)).status_code == 303
    assert _step(client, supervisor, breach_id, "close", note="All duties done.").status_code == 303
    assert fetch(client, Breach, id=breach_id).closed_at == T0
    closed = _step(client, supervisor, breach_id, "", **_facts(risk="unlikely"))
    assert closed.status_code == 422 and "This breach is closed" in closed.text
    assert _step(client, supervisor, breach_id, "reopen").status_code == 422  # no reason given
    assert _step(client, supervisor, breach_id, "reopen", note="The provider found a second link.").status_code == 303
    assert fetch(client, Breach, id=breach_id).closed_at is None
    actions = [entry["action"] for entry in _trail(client, breach_id)]
    assert actions == ["recorded", "people_told", "authority_notified", "updated", "closed", "reopened"]


def test_bad_facts_get_a_clear_error_and_record_nothing(client: TestClient, supervisor: str) -> None:
    cases = [
        ({"title": ""}, "Title is required"),
        ({"title": "Two\nlines"}, "a line break"),
        ({"description": "nul \x00 here"}, "control character"),
        ({"aware_at": "2026-11-03T10:00"}, "Aware since must be between 2000 and now"),
        ({"aware_at": "yesterday"}, "is not a date and time"),
        ({"occurred_from": "0001-01-01T00:00"}, "Occurred from must be between 2000 and now"),
        ({"occurred_until": "9999-12-31T23:59"}, "Occurred until must be between 2000 and now"),
        ({"aware_at": "2026-03-29T02:30"}, "does not exist in Europe/Paris"),
        ({"subjects_estimate": "3000000000"}, "must be a whole number"),
        ({"occurred_from": "2026-11-02T09:00"}, "nobody is aware of a breach before it starts"),
        ({"occurred_until": "2026-10-01T09:00"}, "Occurred until is before Occurred from"),
        ({"subjects_estimate": "about 10k"}, "must be a whole number"),
        ({"risk": "meh"}, "Risk must be one of"),
        ({"description": "x" * 10_001}, "longer than 10000 characters"),
    ]
    for overrides, message in cases:
        answer = post(client, supervisor, "/console/breaches", _facts(**overrides))
        assert answer.status_code == 422, (overrides, answer.status_code)
        assert message in answer.text, overrides
    assert count(client, Breach) == 0
    missing_version = post(client, supervisor, "/console/breaches/1/note", {"note": "x"})
    assert missing_version.status_code == 422 and "no version of the breach" in missing_version.text


def test_notification_content_and_register_export(client: TestClient, supervisor: str) -> None:
    breach_id = _record(client, supervisor, risk="risk", measures="Link revoked at 09:40.")
    document = client.get(f"/console/breaches/{breach_id}/notification")
    assert document.status_code == 200
    assert document.headers["content-type"].startswith("text/markdown")
    assert document.headers["content-disposition"] == f'attachment; filename="breach-{breach_id}-notification.md"'
    text = document.text
    for expected in (
        "Demo Shop SAS",  # the controller, from policy_docs/purposes.yaml
        "dpo@demo-shop.example",  # 33(3)(b): the contact point
        "Aware since: 2026-11-02 07:30 UTC (2026-11-02 08:30 Europe/Paris)",
        "Notification due by: 2026-11-05 07:30 UTC",
        "Confidentiality: data disclosed",  # 33(3)(a): nature
        "Approximate number of people concerned: 12,500",
        "Categories of personal data records concerned: email addresses, consent history",
        "Unsolicited email, phishing attempts.",  # 33(3)(c)
        "Link revoked at 09:40.",  # 33(3)(d)
        "Not required unless the risk is high",  # 34
    ):
        assert expected in text, expected
    export = client.get("/console/breaches/export")
    assert export.status_code == 200
    body = orjson.loads(export.content)
    assert body["controller"] == "Demo Shop SAS"
    (item,) = body["breaches"]
    assert (item["id"], item["state"], item["notify_by"]) == (breach_id, "due", "2026-11-05T07:30:00Z")
    assert [entry["action"] for entry in item["trail"]] == ["recorded"]
    assert item["trail"][0]["changes"]["aware_at"] == [None, "2026-11-02T07:30:00Z"]


def test_auditors_read_the_register_and_change_nothing(client: TestClient, supervisor: str) -> None:
    breach_id = _record(client, supervisor)
    auditor = sign_in(client, "auditor")
    for path in ("/console/breaches", f"/console/breaches/{breach_id}", "/console/breaches/export"):
        assert client.get(path).status_code == 200, path
    page = client.get(f"/console/breaches/{breach_id}")
    assert "Record the notification" not in page.text and "Close the breach" not in page.text
    assert post(client, auditor, "/console/breaches", _facts()).status_code == 403
    assert _step(client, auditor, breach_id, "note", note="hello").status_code == 403
    agent = sign_in(client, "agent")
    assert agent and client.get("/console/breaches").status_code == 403
    assert "Breaches" not in client.get("/console").text

    async def actions() -> list[str]:
        rows = await AccessLog.filter(action__startswith="staff_").order_by("id").values_list("action", flat=True)
        return [str(action) for action in rows]

    logged = run(client, actions)
    assert "staff_record_breach" in logged and logged.count("staff_breach_export") == 1
    assert fetch(client, Breach, id=breach_id).version == 1


def test_the_register_lists_open_breaches_by_urgency(client: TestClient, clock: Clock, supervisor: str) -> None:
    later = _record(client, supervisor, title="Later", aware_at="2026-11-02T09:30")
    earlier = _record(client, supervisor, title="Earlier", aware_at="2026-11-01T09:30", occurred_from="")
    unlikely = _record(
        client, supervisor, title="Unlikely", aware_at="2026-10-30T09:30", occurred_from="", risk="unlikely"
    )
    clock.set(T0 + timedelta(hours=1))
    text = client.get("/console/breaches").text
    order = [text.index(f">{title}<") for title in ("Earlier", "Later", "Unlikely")]
    assert order == sorted(order), order  # the one due first comes first; "unlikely" has no clock to run
    assert "not required (risk unlikely)" in text
    assert sorted([later, earlier, unlikely]) == [later, earlier, unlikely]  # ids in the order recorded


def test_a_local_time_that_happens_twice_is_the_first(client: TestClient, clock: Clock, supervisor: str) -> None:
    """25 October 2026, 02:30 in Paris happens twice (clocks go back at 03:00 CEST): the first, which makes the
    deadline earlier, never later."""
    breach_id = _record(client, supervisor, aware_at="2026-10-25T02:30", occurred_from="")
    assert fetch(client, Breach, id=breach_id).aware_at == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)


def test_moving_aware_since_needs_a_reason_and_stays_before_its_proofs(
    client: TestClient, clock: Clock, supervisor: str
) -> None:
    breach_id = _record(client, supervisor, risk="risk")  # aware 07:30 UTC, recorded 09:00 UTC
    assert _step(client, supervisor, breach_id, "notified", authority_notified_at="2026-11-02T09:50").status_code == 303
    no_reason = _step(
        client, supervisor, breach_id, "", **_facts(risk="risk", aware_at="2026-10-29T08:30", occurred_from="")
    )
    assert no_reason.status_code == 422 and "why Aware since changes" in no_reason.text
    later = _step(client, supervisor, breach_id, "", **_facts(risk="risk", aware_at="2026-11-02T09:55"), note="x")
    assert later.status_code == 422 and "cannot be later than when the authority was notified" in later.text
    earlier = _step(
        client,
        supervisor,
        breach_id,
        "",
        **_facts(risk="risk", aware_at="2026-10-29T08:30", occurred_from=""),
        note="The provider's logs show the link was reported to us on 29 October.",
    )
    assert earlier.status_code == 303
    breach = fetch(client, Breach, id=breach_id)
    assert breach.aware_at == datetime(2026, 10, 29, 7, 30, tzinfo=UTC)
    assert breach.late_reason == "The provider's logs show the link was reported to us on 29 October."
    page = client.get(f"/console/breaches/{breach_id}")
    assert "after 72 h" in page.text  # notified 2026-11-02, more than 72 hours after 29 October
    trail = _trail(client, breach_id)[-1]["changes"]
    assert trail["aware_at"] == ["2026-11-02T07:30:00Z", "2026-10-29T07:30:00Z"]
    assert trail["late_reason"][0] == ""


def test_typed_text_stays_text_in_the_notification(client: TestClient, supervisor: str) -> None:
    breach_id = _record(
        client,
        supervisor,
        title="Leak <script>alert(1)</script>",
        description="See [the report](javascript:alert(1)).\n\n# Not a heading\nSecond line.",
    )
    text = client.get(f"/console/breaches/{breach_id}/notification").text
    assert "<script>" not in text and "\\<script\\>" in text
    assert "[the report](" not in text and "\\[the report\\](javascript:alert(1))" in text
    assert "\n# Not a heading" not in text and "\\# Not a heading" in text
    draft = text.split("## 2. Communication to the people concerned (GDPR 34(2))", 1)[1].strip().split("\n")
    quote = draft[draft.index(next(line for line in draft if line.startswith(">"))) :]
    assert quote and all(line.startswith(">") for line in quote), quote
    assert "> \\# Not a heading" in quote and "> Second line." in quote


def test_a_note_is_checked_like_every_text(client: TestClient, supervisor: str) -> None:
    """A NUL (which PostgreSQL refuses) or an over-long note is refused with its reason, never cut or stored."""
    breach_id = _record(client, supervisor)
    for note, message in (("bad \x00 note", "control character"), ("x" * 10_001, "longer than 10000 characters")):
        refused = _step(client, supervisor, breach_id, "note", note=note)
        assert refused.status_code == 422 and message in refused.text, note[:10]
    assert [entry["action"] for entry in _trail(client, breach_id)] == ["recorded"]
    assert _step(client, supervisor, breach_id, "note", note="Provider called back.").status_code == 303
