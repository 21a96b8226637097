"""`python -m server ledger repair`: rewrite what is derived from the ledger wherever it differs from the ledger.

The events are the record; the state projection (`consent_states`) and, on PostgreSQL, the consent check's read model
(`subjects.check_states`, server.consent.read_model) are derived from them, and every check answers from those. If
one of them was changed by hand (a mistaken repair in SQL, a restore of one table), `ledger verify` names the
subject, and this rewrites the derived rows from a replay of the subject's events:

- only subjects whose hash chain verifies: a chain that does not is evidence of tampering with the record itself,
  for a person to look at, and a replay of it proves nothing; those are listed and left as they are;
- one subject at a time, in a transaction that first locks the subject's row as the ledger does before it records,
  then reads the events and states again: safe while the server runs and records;
- the subject's `flags_changed_at` is set to the repair's instant, so that the audience change feed
  (server.consent.audience) hands the subject's corrected answers to the next poll of every marketing system,
  whatever cursor it holds. No event is written: the record did not change, only what was derived from it;
- each repair is written to the access log in its transaction (actor type `operator`, action `ledger_repair`,
  what was rewritten in `detail`), so the subject's proof bundle and the console's access log show that the
  answers derived from the record were rewritten, when and by whom (GDPR 5(2)).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tortoise.transactions import in_transaction

from server.accesslog import log_access
from server.consent import read_model
from server.db import is_postgres, lock_row
from server.ledger.projection import delete_state, write_state
from server.ledger.replay import replay
from server.ledger.verify import Break, judged_subjects, load_page, policy_bodies, state_matches, verify_chain
from server.models import Subject


@dataclass(frozen=True)
class Repaired:
    ref: str
    states: int  # state rows written or deleted
    read_model: bool  # the check's read model rewritten (PostgreSQL)

    def __str__(self) -> str:
        done = []
        if self.states:
            done.append(f"{self.states} state row(s) rewritten from a replay of the ledger")
        if self.read_model:
            done.append("the consent check's read model recomputed")
        return f"subject {self.ref!r}: {'; '.join(done)}"


@dataclass
class RepairReport:
    subjects: int = 0
    repaired: list[Repaired] = field(default_factory=list)
    refused: list[Break] = field(default_factory=list)  # chains that do not verify: nothing written


async def repair_ledger(
    clock: Callable[[], datetime],
    operator: str,
    page_size: int = 500,
    announce: Callable[[Repaired | Break], None] | None = None,
) -> RepairReport:
    """Find the subjects whose projection or read model differs from their ledger (as `verify_ledger` does), and
    repair each under its lock, in the access log as `operator` (who runs it). `announce` is told of each subject
    repaired or refused as soon as it is: each repair is committed on its own, so what was done is known even if a
    later one fails.

    The search reads without a lock, the subject, its events and its states in three statements: a decision
    recorded in between makes a sound chain look broken (more events than the head says) or a sound projection
    look stale. So every subject found wrong is judged again under its lock, by `repair_subject`."""
    report = RepairReport()
    policies = await policy_bodies()
    async for subject, _, found in judged_subjects(policies, page_size):
        report.subjects += 1
        if found is None:
            continue
        outcome = await repair_subject(subject["id"], policies, clock, operator)
        if outcome is None:
            continue
        if isinstance(outcome, Break):
            report.refused.append(outcome)
        else:
            report.repaired.append(outcome)
        if announce is not None:
            announce(outcome)
    return report


async def repair_subject(
    subject_id: Any, policies: dict[int, dict[str, str]], clock: Callable[[], datetime], operator: str
) -> Repaired | Break | None:
    """Lock the subject, read its events and states again, and rewrite the states (and on PostgreSQL the read
    model) where they differ from a replay. A Break when the chain does not verify under the lock (nothing
    written); None when there was nothing to do by then."""
    async with in_transaction() as conn:
        await lock_row(conn, "subjects", subject_id)
        subject = (
            await Subject.filter(id=subject_id).using_db(conn).values("id", "ref", "pseudonym", "last_seq", "head_hash")
        )[0]
        events, states = await load_page([subject_id], conn)
        sid = str(subject_id)
        broken = verify_chain(subject, events[sid], policies)
        if broken is not None:
            return broken
        expected = replay(events[sid])
        actual = {(row["purpose_id"], row["channel_id"]): row for row in states[sid]}
        written = 0
        for key, extra in actual.items():
            if key not in expected:
                await delete_state(conn, extra["id"])
                written += 1
        for (purpose, channel), view in expected.items():
            row = actual.get((purpose, channel))
            if row is not None and state_matches(row, view):
                continue
            await write_state(conn, subject_id, purpose, channel, view)
            written += 1
        recomputed = False
        if is_postgres(conn):
            # Also after the states above: this statement sees them (same transaction), so the commit-time trigger
            # then finds the object equal and writes nothing more. Rewritten states change it anyway: it is said to
            # have been repaired only when it was wrong on its own.
            changed, _ = await conn.execute_query(read_model.REPAIR, [sid])
            recomputed = bool(changed) and not written
        if not written and not recomputed:
            return None
        await log_access(
            at=clock(),
            actor_type="operator",
            actor_id=operator,
            action="ledger_repair",
            subject_id=subject_id,
            detail={"state_rows_rewritten": written, "read_model_recomputed": recomputed},
            using_db=conn,
        )
        # Last, with the clock read just before the commit (server.visibility).
        await Subject.filter(id=subject_id).using_db(conn).update(flags_changed_at=clock())
        return Repaired(subject["ref"], written, recomputed)
