"""`python -m server ledger verify`: recompute every chain and compare the projection with a replay (and, on
PostgreSQL, the consent check's read model with the projection: server.consent.read_model)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from server.consent import read_model
from server.consent.decide import StateView
from server.db import connection, is_postgres, placeholders
from server.ledger.chain import GENESIS, body_hash, row_body
from server.ledger.replay import replay
from server.models import ConsentEvent, ConsentState, PolicyVersion, Subject


@dataclass(frozen=True)
class Break:
    ref: str
    seq: int | None
    problem: str

    def __str__(self) -> str:
        where = f"subject {self.ref!r}" + (f" seq {self.seq}" if self.seq is not None else "")
        return f"{where}: {self.problem}"


@dataclass
class VerifyReport:
    subjects: int = 0
    events: int = 0
    breaks: list[Break] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.breaks


async def verify_ledger(page_size: int = 500) -> VerifyReport:
    report = VerifyReport()
    async for _, events, broken in judged_subjects(await policy_bodies(), page_size):
        report.subjects += 1
        report.events += events
        if broken:
            report.breaks.append(broken)
    return report


async def judged_subjects(
    policies: dict[int, dict[str, str]], page_size: int = 500
) -> AsyncIterator[tuple[dict[str, Any], int, Break | None]]:
    """Every subject, in pages by id, with its number of events and the first thing found wrong with it: its chain
    (against `policy_bodies`), its projection against a replay, or (PostgreSQL) its check read model. Read without a
    lock."""
    async for subjects in subject_pages(page_size):
        ids = [s["id"] for s in subjects]
        events, states = await load_page(ids)
        stale = await stale_read_model(ids)
        for subject in subjects:
            sid = str(subject["id"])
            broken = verify_chain(subject, events[sid], policies) or verify_projection(
                subject, events[sid], states[sid]
            )
            if broken is None and subject["ref"] in stale:
                broken = Break(subject["ref"], None, "the consent check's read model differs from the state projection")
            yield subject, len(events[sid]), broken


async def policy_bodies() -> dict[int, dict[str, str]]:
    """Each policy version's object as event bodies hold it (the hash covers it), by id."""
    return {
        p.id: {"document": p.document, "version": p.version, "lang": p.lang, "sha256": p.sha256}
        for p in await PolicyVersion.all()
    }


async def load_page(
    ids: list[Any], conn: BaseDBAsyncClient | None = None
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[dict[str, Any]]]]:
    """The events (in `seq` order) and the state rows of the subjects `ids`, by subject id as text."""
    events: dict[str, list[dict[str, Any]]] = {str(i): [] for i in ids}
    for row in await ConsentEvent.filter(subject_id__in=ids).using_db(conn).order_by("subject_id", "seq").values():
        events[str(row["subject_id"])].append(row)
    states: dict[str, list[dict[str, Any]]] = {str(i): [] for i in ids}
    stored = await _stored_instants(ids, conn or connection())
    for row in await ConsentState.filter(subject_id__in=ids).using_db(conn).values():
        row.update(stored.get(row["id"], {}))
        states[str(row["subject_id"])].append(row)
    return events, states


async def _stored_instants(ids: list[Any], conn: BaseDBAsyncClient) -> dict[int, dict[str, str | None]]:
    """On SQLite, each state row's instants as the text stored: the bulk checks compare and slice that text
    (server.consent.bulk), so a row holding the right instant in another form (`T`, `Z`, another offset, as a
    hand edit may leave it) answers batch and stream checks wrongly, though the ORM reads it as the same instant.
    PostgreSQL stores instants, not text: nothing to add there."""
    if is_postgres(conn) or not ids:
        return {}
    marks = ", ".join(placeholders(conn, len(ids)))
    _, rows = await conn.execute_query(
        f"SELECT id, since, valid_until FROM consent_states WHERE subject_id IN ({marks})", [str(i) for i in ids]
    )
    return {row["id"]: {"since_text": row["since"], "valid_until_text": row["valid_until"]} for row in rows}


async def stale_read_model(ids: list[Any]) -> set[str]:
    """The refs, among the subjects `ids`, whose `check_states` is not what their states make (PostgreSQL only)."""
    conn = connection()
    if not is_postgres(conn):
        return set()
    _, rows = await conn.execute_query(read_model.MISMATCHES, [[str(i) for i in ids]])
    return {row["ref"] for row in rows}


async def subject_pages(page_size: int) -> AsyncIterator[list[dict[str, Any]]]:
    """Subjects in pages by id (keyset pagination: constant cost per page on a large ledger)."""
    query = Subject.all()
    while True:
        page = await query.order_by("id").limit(page_size).values("id", "ref", "pseudonym", "last_seq", "head_hash")
        if not page:
            return
        yield page
        query = Subject.filter(id__gt=page[-1]["id"])


def verify_chain(
    subject: dict[str, Any], events: list[dict[str, Any]], policies: dict[int, dict[str, str]]
) -> Break | None:
    ref = subject["ref"]
    prev = GENESIS
    for expected_seq, row in enumerate(events, start=1):
        if row["seq"] != expected_seq:
            return Break(ref, expected_seq, f"seq gap: expected {expected_seq}, found {row['seq']}")
        if row["prev_hash"] != prev:
            return Break(ref, row["seq"], "prev_hash does not link to the previous event's hash")
        body = row_body(row, subject["pseudonym"], policies.get(row["policy_version_id"], {}))
        if body_hash(body) != row["hash"]:
            return Break(ref, row["seq"], "hash does not match the event's content")
        prev = row["hash"]
    if len(events) != subject["last_seq"] or prev != subject["head_hash"]:
        return Break(
            ref,
            len(events),
            f"chain ends at seq {len(events)} but the subject's head is seq {subject['last_seq']}",
        )
    return None


def verify_projection(
    subject: dict[str, Any], events: list[dict[str, Any]], states: list[dict[str, Any]]
) -> Break | None:
    expected = replay(events)
    actual = {(s["purpose_id"], s["channel_id"]): s for s in states}
    if set(expected) != set(actual):
        return Break(subject["ref"], None, "state projection rows differ from a replay of the ledger")
    for key, view in expected.items():
        if not state_matches(actual[key], view):
            return Break(subject["ref"], None, f"state of {key[0]}/{key[1]} differs from a replay of the ledger")
    return None


def state_matches(row: dict[str, Any], view: StateView) -> bool:
    """Whether a `consent_states` row holds what a replay of the ledger gives for its purpose x channel (on SQLite,
    its instants also in the text form the ledger writes: `_stored_instants`)."""
    if "since_text" in row and (row["since_text"], row["valid_until_text"]) != (
        read_model.instant_text(view.since),
        read_model.instant_text(view.valid_until),
    ):
        return False
    return (row["status"], str(row["event_id"]), row["since"], row["valid_until"], row["policy_version_id"]) == (
        view.status,
        view.event_id,
        view.since,
        view.valid_until,
        view.policy_version_id,
    )
