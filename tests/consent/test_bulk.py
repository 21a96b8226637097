"""Batch, stream and audience export agree with single checks (issue: consent-check API)."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import AsyncGenerator
from typing import Any, cast

import orjson
import pytest
from starlette.testclient import TestClient

from server.consent import reader
from server.settings import Settings
from tests.helpers.api import record
from tests.helpers.app import run, services_of

PAIRS = [("offers", "email"), ("offers", "sms"), ("offers", "post"), ("partners", "email"), ("newsletter", "email")]


def _seed(client: TestClient, auth: dict[str, str]) -> list[dict[str, str]]:
    record(client, auth, "a", [("offers", "email", "grant"), ("partners", "email", "grant")])
    record(client, auth, "b", [("offers", "sms", "deny"), ("newsletter", "email", "grant")])
    record(client, auth, "c", [("offers", "post", "object"), ("offers", "email", "soft_opt_in")])
    # A ref with a no-break space: valid, though not str.isprintable() (the bulk fast path hands it to the full rule).
    record(client, auth, "d\u00a0e", [("offers", "email", "grant")])
    # A ref that JSON must escape: every answer and export line writes it as a JSON string.
    assert record(client, auth, 'q"u', [("offers", "email", "grant")]).status_code == 201
    refs = ["a", "b", "c", "d\u00a0e", 'q"u', "ghost"]
    return [{"subject": r, "purpose": p, "channel": c} for r, (p, c) in itertools.product(refs, PAIRS)]


def _single(client: TestClient, auth: dict[str, str], question: dict[str, str]) -> dict[str, Any]:
    response = client.get("/v1/consents/check", params=question, headers=auth)
    assert response.status_code == 200
    return dict(response.json())


def test_batch_and_stream_answer_what_single_checks_answer(client: TestClient, auth: dict[str, str]) -> None:
    questions = _seed(client, auth)
    singles = [_single(client, auth, q) for q in questions]

    batch = client.post("/v1/consents/check", json={"checks": questions}, headers=auth)
    assert batch.status_code == 200, batch.text
    results = batch.json()["results"]
    assert [{k: r[k] for k in q} for r, q in zip(results, questions, strict=True)] == questions
    assert [{k: v for k, v in r.items() if k not in questions[0]} for r in results] == singles

    body = b"".join(orjson.dumps(q) + b"\n" for q in questions)
    stream = client.post(
        "/v1/consents/check/stream", content=body, headers={**auth, "Content-Type": "application/x-ndjson"}
    )
    assert stream.status_code == 200
    assert stream.headers["content-type"].startswith("application/x-ndjson")
    lines = [orjson.loads(line) for line in stream.content.splitlines()]
    assert [line["line"] for line in lines] == list(range(1, len(questions) + 1))
    assert [{k: v for k, v in line.items() if k not in ("line", *questions[0])} for line in lines] == singles


def test_a_full_batch_answers_each_question_in_its_place(client: TestClient, auth: dict[str, str]) -> None:
    """10,000 questions (more than one part of a PostgreSQL read, more than one SQLite query), known and unknown
    subjects interleaved: every answer is the single check's answer for the question at that index."""
    questions = _seed(client, auth)
    singles = [_single(client, auth, q) for q in questions]
    order = [(i * 7) % len(questions) for i in range(10_000)]
    batch = client.post("/v1/consents/check", json={"checks": [questions[i] for i in order]}, headers=auth)
    assert batch.status_code == 200, batch.text
    assert batch.json()["results"] == [{**questions[i], **singles[i]} for i in order]


def test_pairs_read_over_several_sqlite_statements_keep_their_answers(
    client: TestClient, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SQLite bulk read takes at most `_UNION_MAX` purpose x channel pairs per statement; a catalog with more pairs
    is read in several statements. With two per statement, the five pairs here take three."""
    monkeypatch.setattr(reader, "_UNION_MAX", 2)
    questions = _seed(client, auth)
    singles = [_single(client, auth, q) for q in questions]
    order = [(i * 7) % len(questions) for i in range(len(questions) * 3)]
    batch = client.post("/v1/consents/check", json={"checks": [questions[i] for i in order]}, headers=auth)
    assert batch.status_code == 200, batch.text
    assert batch.json()["results"] == [{**questions[i], **singles[i]} for i in order]


@pytest.mark.parametrize("mmap_mb", [0, 64])
def test_sqlite_bulk_reads_see_every_commit_mapped_or_not(
    client: TestClient, auth: dict[str, str], settings: Settings, mmap_mb: int
) -> None:
    """The bulk connections read the file through mmap unless SQLITE_BULK_MMAP_MB is 0; either way a read sees what
    was committed before it, whether the commit is still in the write-ahead log or was checkpointed into the mapped
    file since, and answers as single checks do."""
    if not settings.database_url.startswith("sqlite"):
        pytest.skip("SQLite's bulk connections")
    questions = _seed(client, auth)
    path = settings.database_url.removeprefix("sqlite://")
    keys = [(q["subject"], q["purpose"], q["channel"]) for q in questions]
    bulk = reader.SqliteStateReader(path, bulk_mmap_mb=mmap_mb)
    writer = sqlite3.connect(path)
    try:
        conn = bulk._bulk_conns.get()
        assert conn.execute("PRAGMA mmap_size").fetchone() == (mmap_mb * 1024 * 1024,)
        bulk._bulk_conns.put(conn)
        reads = [run(client, bulk.rows, keys)]
        for ref, decision in [("a", ("offers", "email", "withdraw")), ("ghost", ("offers", "email", "grant"))]:
            record(client, auth, ref, [decision])
            reads.append(run(client, bulk.rows, keys))  # the commit is in the write-ahead log
            assert writer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0  # not busy: all moved
            reads.append(run(client, bulk.rows, keys))  # now in the file itself
    finally:
        writer.close()
        run(client, bulk.close)

    def changed(before: list[Any], after: list[Any]) -> set[tuple[str, str, str]]:
        return {k for k, old, new in zip(keys, before, after, strict=True) if old != new}

    first, withdrawn, withdrawn_checkpointed, granted, granted_checkpointed = reads
    assert changed(first, withdrawn) == {("a", "offers", "email")}
    assert withdrawn[keys.index(("a", "offers", "email"))][2] == "withdrawn"
    assert changed(withdrawn, granted) == {k for k in keys if k[0] == "ghost"}  # ghost is now known
    assert granted[keys.index(("ghost", "offers", "email"))][2] == "granted"
    assert withdrawn_checkpointed == withdrawn and granted_checkpointed == granted
    # and the answers are the single checks' answers
    batch = client.post("/v1/consents/check", json={"checks": questions}, headers=auth).json()["results"]
    assert [{k: v for k, v in r.items() if k not in questions[0]} for r in batch] == [
        _single(client, auth, q) for q in questions
    ]


def test_batch_items_with_errors_are_answered_in_place(client: TestClient, auth: dict[str, str]) -> None:
    record(client, auth, "a", [("offers", "email", "grant")])
    checks = [
        {"subject": "a", "purpose": "offers", "channel": "email"},
        {"subject": "a", "purpose": "nope", "channel": "email"},
        {"subject": "a", "purpose": "offers"},
        "not an object",
        {"subject": "a", "purpose": "offers", "channel": "email", "extra": 1},
        {"subject": "a\x01", "purpose": "offers", "channel": "email"},
    ]
    results = client.post("/v1/consents/check", json={"checks": checks}, headers=auth).json()["results"]
    assert results[0]["allowed"] is True
    assert [r.get("error", {}).get("type") for r in results[1:]] == [
        "/problems/unknown-purpose",
        "/problems/invalid-request",
        "/problems/invalid-request",
        "/problems/invalid-request",
        "/problems/invalid-request",
    ]


def test_batch_limit_is_a_413_that_says_the_limit(client: TestClient, auth: dict[str, str]) -> None:
    checks = [{"subject": "a", "purpose": "offers", "channel": "email"}] * 10_001
    response = client.post("/v1/consents/check", json={"checks": checks}, headers=auth)
    assert response.status_code == 413
    assert response.json()["limit"] == 10_000 and "10000" in response.json()["detail"]
    ok = client.post("/v1/consents/check", json={"checks": checks[:10_000]}, headers=auth)
    assert ok.status_code == 200 and len(ok.json()["results"]) == 10_000
    for bad in (b"[]", b'{"checks": 1}', b"{nope"):
        response = client.post("/v1/consents/check", content=bad, headers={**auth, "Content-Type": "application/json"})
        assert response.status_code in (400, 422) and response.json()["type"].startswith("/problems/")


def test_stream_reports_bad_lines_by_number_and_goes_on(client: TestClient, auth: dict[str, str]) -> None:
    record(client, auth, "a", [("offers", "email", "grant")])
    good = b'{"subject": "a", "purpose": "offers", "channel": "email"}'
    body = b"\n".join(
        [good, b"{broken", b"", good, b'{"subject": "a", "purpose": "zzz", "channel": "email"}', b"x" * 70_000, good]
    )  # no final newline: the last line still counts
    response = client.post(
        "/v1/consents/check/stream", content=body, headers={**auth, "Content-Type": "application/x-ndjson"}
    )
    lines = [orjson.loads(line) for line in response.content.splitlines()]
    assert [(line["line"], "error" in line) for line in lines] == [
        (1, False),
        (2, True),
        (4, False),
        (5, True),
        (6, True),
        (7, False),
    ]
    assert lines[1]["error"]["type"] == "/problems/malformed-body"
    assert lines[3]["error"]["type"] == "/problems/unknown-purpose"


TRICKY_LINES = [
    b'{"subject": "a", "purpose": "offers", "channel": "email"}',
    # Two values on one line, the second running on into the next line: neither line is one check.
    b'{"subject": "a", "purpose": "offers", "channel": "email"}, {"subject": "a",',
    b'"purpose": "offers", "channel": "email"}',
    b'{"subject": "a", "purpose": "offers", "channel": "email"}\r',  # CRLF: a valid line
    b'{"subject": "a", "purpose": "offers", "channel": "email", "x": {}}',
    b'{"subject": "a", "subject": "b", "purpose": "offers", "channel": "email"}',  # the last "subject" counts
    b'{"subject": 5, "purpose": "offers", "channel": "email"}',
    b'{"subject": "", "purpose": "offers", "channel": "email"}',
    b'{"subject": "a", "purpose": ["offers"], "channel": "email"}',
    b'{"subject": "x{y}", "purpose": "offers", "channel": "email"}',
    b'{"subject": "a", "purpose": "offers", "channel": "email"} ',
    b'{"subject": "a\\"}',  # one brace each side, but the string never ends on this line
    b'{"subject": "b", "purpose": "offers", "channel": "email"}',
    b"  ",
    b'{"subject": "a", "purpose": "offers", "channel": "email", "at": "now"}',
    b'{"subject": "a", "purpose": "offers", "channel": "sms"}',
]


def test_each_stream_line_is_answered_as_if_it_came_alone(client: TestClient, auth: dict[str, str]) -> None:
    """Whole chunks of well-formed lines are parsed at once (`BulkRule.keys`); whatever the lines hold, the answer
    to each line is the answer it gets on its own, and a line never merges with its neighbour."""
    record(client, auth, "a", [("offers", "email", "grant")])
    record(client, auth, "b", [("offers", "email", "deny")])
    headers = {**auth, "Content-Type": "application/x-ndjson"}

    def stream(body: bytes) -> list[dict[str, Any]]:
        response = client.post("/v1/consents/check/stream", content=body, headers=headers)
        assert response.status_code == 200, response.text
        return [orjson.loads(line) for line in response.content.splitlines()]

    alone: list[dict[str, Any]] = []
    for number, line in enumerate(TRICKY_LINES, 1):
        alone.extend({**answer, "line": number} for answer in stream(line + b"\n"))
    assert len(alone) == len(TRICKY_LINES) - 1  # the blank line gets no answer
    assert sum("error" in answer for answer in alone) == 8
    assert stream(b"\n".join(TRICKY_LINES) + b"\n") == alone
    # Two lines that make one check if read as one, and a line of two checks: three errors, as on their own.
    merged = [
        b'{"subject": "a"',
        b'"purpose": "offers", "channel": "email"}',
        b'{"subject": "a", "purpose": "offers", "channel": "email"}, '
        b'{"subject": "b", "purpose": "offers", "channel": "email"}',
    ]
    assert [("error" in answer, answer["line"]) for answer in stream(b"\n".join(merged) + b"\n")] == [
        (True, 1),
        (True, 2),
        (True, 3),
    ]
    # The same lines two at a time: each pair is a chunk of its own that may or may not take the fast path.
    for first in range(0, len(TRICKY_LINES), 2):
        pair = TRICKY_LINES[first : first + 2]
        expected = [{**answer, "line": answer["line"] - first} for answer in alone if answer["line"] - first in (1, 2)]
        assert stream(b"\n".join(pair) + b"\n") == expected, pair


def _audience(client: TestClient, auth: dict[str, str], path: str) -> tuple[list[dict[str, Any]], str]:
    response = client.get(path, headers=auth)
    assert response.status_code == 200, response.text
    return [orjson.loads(line) for line in response.content.splitlines()], response.headers["x-next-since"]


def test_audience_lists_exactly_the_subjects_the_check_allows(client: TestClient, auth: dict[str, str]) -> None:
    questions = _seed(client, auth)
    for purpose, channel in PAIRS:
        rows, _ = _audience(client, auth, f"/v1/audiences/{purpose}/{channel}")
        allowed = {
            q["subject"]
            for q in questions
            if (q["purpose"], q["channel"]) == (purpose, channel) and _single(client, auth, q)["allowed"]
        }
        assert {row["ref"] for row in rows} == allowed, (purpose, channel)
    assert client.get("/v1/audiences/nope/email", headers=auth).status_code == 422


def test_stream_keeps_request_order_across_chunks(client: TestClient, auth: dict[str, str]) -> None:
    record(client, auth, "a", [("offers", "email", "grant")])
    subjects = ["a", "ghost"]
    body = b"".join(
        orjson.dumps({"subject": subjects[i % 2], "purpose": "offers", "channel": "email"}) + b"\n" for i in range(3500)
    )
    response = client.post(
        "/v1/consents/check/stream", content=body, headers={**auth, "Content-Type": "application/x-ndjson"}
    )
    lines = [orjson.loads(line) for line in response.content.splitlines()]
    assert [line["line"] for line in lines] == list(range(1, 3501))
    assert [line["reason"] for line in lines[:4]] == ["granted", "unknown_subject", "granted", "unknown_subject"]
    assert {line["subject"] for line in lines[3000:]} == {"a", "ghost"}


def test_an_audience_read_stopped_early_leaves_the_reader_usable(client: TestClient, auth: dict[str, str]) -> None:
    """A client that hangs up mid-export stops the reader's stream; on PostgreSQL a fetch of the next chunk is
    already in flight then, and its connection must go back to the pool only once that fetch has ended."""
    for n in range(5):
        record(client, auth, f"early-{n}", [("offers", "email", "grant")])
    checks = services_of(client).checks
    assert checks is not None
    reader = checks.reader
    sql = "SELECT ref FROM subjects ORDER BY ref"

    async def stop_after_first_chunk() -> list[Any]:
        rows = cast(AsyncGenerator[list[tuple[Any, ...]], None], reader.stream(sql, [], 2))
        first = await anext(rows)
        await rows.aclose()
        return list(first)

    for _ in range(12):  # more than the pool's connections: a connection kept busy would run it dry
        assert [tuple(row) for row in run(client, stop_after_first_chunk)] == [("early-0",), ("early-1",)]
    answer = _single(client, auth, {"subject": "early-4", "purpose": "offers", "channel": "email"})
    assert answer["allowed"] is True
    rows, _ = _audience(client, auth, "/v1/audiences/offers/email")
    assert sorted(row["ref"] for row in rows) == [f"early-{n}" for n in range(5)]
