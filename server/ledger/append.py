"""Appending decisions to the ledger: one transaction per call, serialised per subject.

The subject row is the lock: on PostgreSQL an idempotent insert, then `SELECT ... FOR UPDATE` unless the insert
created the row (which locks it); on SQLite the transaction starts with that insert, which takes the database write
lock (single writer). Events, the state projection, the log queue, the receipt and the chain head are written in the
same transaction (invariants 3 and 5, docs/design.md), as a few multi-row statements (`server.ledger.rows`).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from server.consent.decide import StateView
from server.db import is_postgres, placeholders
from server.errors import (
    ChannelNotOffered,
    InvalidRequest,
    SubjectErased,
    UnknownChannel,
    UnknownPolicyVersion,
    UnknownPurpose,
    WriteWindowExceeded,
)
from server.ids import uuid7
from server.ledger.chain import GENESIS, body_hash, event_body
from server.ledger.evidence import minimise, pseudonym
from server.ledger.projection import state_row
from server.ledger.rows import Statements, events_sql, queue_sql, receipt_sql, states_sql, write_all
from server.ledger.transitions import keeps_validity, next_status
from server.models import UISnapshot
from server.policies.catalog import Catalog
from server.policies.snapshot import CatalogSnapshot, PolicyInfo
from server.recipients.outbox import EventChange
from server.recipients.outbox import queue_events as queue_notices
from server.visibility import WRITE_WINDOW

TOUCHPOINTS = ("preference_center", "banner", "api", "agent", "import", "unsubscribe", "gpc", "system")
# The touchpoints an API client may say a decision came from: its own systems, its own call centre's agents, an
# import of records kept elsewhere. The others are the service's own surfaces, which record their decisions
# themselves: a client naming one would put in the record a provenance the service cannot vouch for.
CLIENT_TOUCHPOINTS = ("api", "agent", "import")
# The actions that can lead to an allowing status: refused for an erased subject (`SubjectErased`).
GRANTING_ACTIONS = frozenset({"grant", "confirm", "soft_opt_in"})


@dataclass(frozen=True)
class Decision:
    purpose: str
    channel: str
    action: str


@dataclass(frozen=True)
class Snapshot:
    """What the person was shown; stored once by SHA-256."""

    kind: str
    content: str
    content_type: str = "text/html; charset=utf-8"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content.encode()).hexdigest()


@dataclass(frozen=True)
class RecordRequest:
    ref: str
    policy: str  # "document/version/lang"
    decisions: Sequence[Decision]
    touchpoint: str
    method: str
    actor_type: str
    actor_id: str | None
    evidence: dict[str, Any] = field(default_factory=dict)
    snapshot: Snapshot | None = None
    snapshot_sha256: str | None = None
    # Claims of the touchpoint's own beside the standard ones in the call's receipt (the banner: its site and the
    # visitor's consent id), so that the receipt stored, proved and handed out is one and the same.
    receipt_claims: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RecordedEvent:
    id: str
    seq: int
    purpose: str
    channel: str
    action: str
    status: str
    policy_version: str
    recorded_at: datetime
    valid_until: datetime | None
    prev_hash: str
    hash: str
    body: dict[str, Any]


@dataclass(frozen=True)
class RecordResult:
    ref: str
    pseudonym: str
    created_subject: bool
    events: list[RecordedEvent]
    receipt: str | None = None


class ReceiptSigner(Protocol):
    """Signs the receipt of a record call inside its transaction (`server.proof.receipts.ReceiptIssuer`)."""

    def issue(self, **fields: Any) -> tuple[str, str]:
        """(receipt id, compact JWS) for the decisions recorded."""
        ...


class Ledger:
    """The write side of the ledger."""

    def __init__(
        self,
        secret_key: str,
        catalog: Catalog,
        clock: Callable[[], datetime],
        receipts: ReceiptSigner | None = None,
        on_notices: Callable[[], None] | None = None,
    ) -> None:
        self.secret_key = secret_key
        self.catalog = catalog
        self.clock = clock
        self.receipts = receipts
        # Called after a commit that queued notices for recipients (the dispatcher's wake-up).
        self.on_notices = on_notices

    async def record(self, request: RecordRequest) -> RecordResult:
        catalog = await self._catalog_with(request)
        policy = catalog.policies.get(request.policy)
        if policy is None:
            raise UnknownPolicyVersion(
                f"policy version {request.policy!r} is not published", policy_version=request.policy
            )
        for decision in request.decisions:
            _validate_target(catalog, decision)
        snapshot_sha = request.snapshot.sha256 if request.snapshot else request.snapshot_sha256
        if request.snapshot is not None and request.snapshot_sha256 not in (None, snapshot_sha):
            # Two accounts of what the person was shown: neither can be recorded as the one.
            raise InvalidRequest(
                f"ui_snapshot_sha256 {request.snapshot_sha256} is not the SHA-256 of ui_snapshot's content "
                f"({snapshot_sha}); send one of them",
                ui_snapshot=request.snapshot_sha256,
            )
        evidence = minimise(request.evidence)
        async with in_transaction() as conn:
            if request.snapshot is not None:
                await store_snapshot(conn, request.snapshot, self.clock())
            # The window runs from here: a new subject's `created_at` is this instant, and waiting for a writer of the
            # same subject counts too (server.visibility).
            started = self.clock()
            granting = any(d.action in GRANTING_ACTIONS for d in request.decisions)
            subject_id, subject_pseudonym, seq, head, created = await self._lock_subject(
                conn, request.ref, started, refuse_erased=granting
            )
            # Read after the subject's write, not before: on SQLite a transaction must write before it reads.
            cited = request.snapshot is None and snapshot_sha is not None
            if cited and not await UISnapshot.exists(sha256=snapshot_sha, using_db=conn):
                raise InvalidRequest(f"UI snapshot {snapshot_sha} is not stored", ui_snapshot=snapshot_sha)
            # A subject created by this call has no state yet: nothing to read.
            current = {} if created else await _current_states(conn, subject_id)
            now = self.clock()
            recorded: list[RecordedEvent] = []
            event_rows: list[tuple[Any, ...]] = []
            states: dict[tuple[str, str], tuple[Any, ...]] = {}
            for decision in request.decisions:
                purpose = catalog.purposes[decision.purpose]
                key = (decision.purpose, decision.channel)
                status = next_status(decision.action, current.get(key), purpose, decision.channel)
                valid_until = (
                    now + timedelta(days=purpose.validity_days)
                    if purpose.validity_days and keeps_validity(status)
                    else None
                )
                seq += 1
                event = _event(
                    request,
                    subject_pseudonym,
                    seq,
                    decision,
                    status,
                    policy,
                    now,
                    valid_until,
                    head,
                    snapshot_sha,
                    evidence,
                )
                event_rows.append(
                    (
                        event.id,
                        subject_id,
                        seq,
                        decision.purpose,
                        decision.channel,
                        decision.action,
                        status,
                        policy.id,
                        request.touchpoint,
                        request.method,
                        request.actor_type,
                        request.actor_id,
                        snapshot_sha,
                        evidence,
                        now,
                        valid_until,
                        head,
                        event.hash,
                    )
                )
                # A later decision of the call on the same key overwrites the earlier one's state (one row a key).
                view = StateView(status, now, valid_until, policy.id, event.id)
                states[key] = state_row(subject_id, decision.purpose, decision.channel, view)
                current[key] = status
                head = event.hash
                recorded.append(event)
            # Events, states, the log queue and the receipt: one statement on PostgreSQL (server.ledger.rows).
            writes = Statements(conn)
            params = writes.params()
            writes.add(events_sql(params, event_rows), params)
            params = writes.params()
            writes.add(states_sql(params, list(states.values())), params)
            params = writes.params()
            # The transparency log's sequencer picks these up after commit (server.proof.log).
            writes.add(queue_sql(params, [(e.id, e.hash) for e in recorded]), params)
            receipt = None
            if self.receipts is not None:
                receipt_id, receipt = self.receipts.issue(
                    pseudonym=subject_pseudonym,
                    policy=policy,
                    touchpoint=request.touchpoint,
                    method=request.method,
                    recorded_at=now,
                    decisions=[(catalog.purposes[e.purpose], e) for e in recorded],
                    ui_snapshot=snapshot_sha,
                    extra=request.receipt_claims,
                )
                params = writes.params()
                writes.add(receipt_sql(params, receipt_id, subject_id, [e.id for e in recorded], receipt, now), params)
            await write_all(conn, writes.parts)
            # After the states: on PostgreSQL the head's move recomputes the read model from them (server.consent.
            # read_model).
            await _move_head(conn, subject_id, seq, head)
            # GDPR 7(3), 19, 21(3): recipients are told of withdrawals and objections, queued in this transaction.
            notices = await queue_notices(
                conn, subject_id, [EventChange(e.id, e.purpose, e.channel, e.status) for e in recorded], now
            )
            # The change feed reads again only the last FEED_OVERLAP: a decision must be committed within
            # WRITE_WINDOW of its `since` (and a new subject of its `created_at`), or it is not kept at all.
            if self.clock() - started > WRITE_WINDOW:
                raise WriteWindowExceeded(
                    f"recording took longer than {WRITE_WINDOW.total_seconds():.0f} s; nothing was kept, send it again"
                )
        if notices and self.on_notices is not None:
            self.on_notices()
        return RecordResult(request.ref, subject_pseudonym, created, recorded, receipt)

    async def _catalog_with(self, request: RecordRequest) -> CatalogSnapshot:
        """The catalogue, reloaded once if the request names something it has not seen yet."""
        catalog = await self.catalog.get()
        if request.policy not in catalog.policies or any(d.purpose not in catalog.purposes for d in request.decisions):
            catalog = await self.catalog.reload()
        return catalog

    async def _lock_subject(
        self, conn: BaseDBAsyncClient, ref: str, now: datetime, *, refuse_erased: bool = False
    ) -> tuple[str, str, int, str, bool]:
        """Create the subject if new (created `now`), then lock its row; returns (id, pseudonym, last_seq,
        head_hash, created). `refuse_erased`: raise `SubjectErased` for an erased subject, read under the lock
        an erasure takes too, so a grant and an erasure at the same instant cannot both pass.

        A subject this call inserts is already locked by the insert (no other writer sees it before the commit,
        and one inserting the same ref waits for it): it is not read again, and it cannot be erased."""
        subject_id, subject_pseudonym = str(uuid.uuid4()), pseudonym(self.secret_key, ref)
        if await _insert_subject(conn, subject_id, ref, subject_pseudonym, now):
            return subject_id, subject_pseudonym, 0, GENESIS, True
        lock = " FOR UPDATE" if is_postgres(conn) else ""
        rows = await conn.execute_query_dict(
            "SELECT id, pseudonym, last_seq, head_hash, erased_at FROM subjects "
            f"WHERE ref = {placeholders(conn, 1)[0]}{lock}",
            [ref],
        )
        row = rows[0]
        if refuse_erased and row["erased_at"] is not None:
            # GDPR 17: nothing that allows processing again is recorded for an erased person.
            raise SubjectErased("this subject's data were erased (GDPR 17): a grant cannot be recorded for them")
        return str(row["id"]), row["pseudonym"], int(row["last_seq"]), row["head_hash"], False


async def _insert_subject(conn: BaseDBAsyncClient, subject_id: str, ref: str, pseudo: str, now: datetime) -> bool:
    """True if the row was inserted, False if the ref was there already."""
    ph = placeholders(conn, 5)
    rows = await conn.execute_query_dict(
        "INSERT INTO subjects (id, ref, pseudonym, last_seq, head_hash, created_at) "
        f"VALUES ({ph[0]}, {ph[1]}, {ph[2]}, 0, {ph[3]}, {ph[4]}) ON CONFLICT (ref) DO NOTHING RETURNING last_seq",
        [subject_id, ref, pseudo, GENESIS, now],
    )
    return bool(rows)


async def _current_states(conn: BaseDBAsyncClient, subject_id: str) -> dict[tuple[str, str], str]:
    """The subject's status per (purpose, channel), read under its lock."""
    rows = await conn.execute_query_dict(
        f"SELECT purpose_id, channel_id, status FROM consent_states WHERE subject_id = {placeholders(conn, 1)[0]}",
        [subject_id],
    )
    return {(row["purpose_id"], row["channel_id"]): row["status"] for row in rows}


async def _move_head(conn: BaseDBAsyncClient, subject_id: str, seq: int, head: str) -> None:
    ph = placeholders(conn, 3)
    await conn.execute_query(
        f"UPDATE subjects SET last_seq = {ph[0]}, head_hash = {ph[1]} WHERE id = {ph[2]}",
        [seq, head, subject_id],
    )


async def store_snapshot(conn: BaseDBAsyncClient, snapshot: Snapshot, now: datetime | None = None) -> None:
    """Store what a person was shown, once per SHA-256 (inside the caller's transaction).

    One INSERT that does nothing when the hash is stored: two requests showing the same text for the first time
    (a new banner text under load) do not collide on the key, and on SQLite the transaction writes before it reads
    (server.db.lock_row says why that matters)."""
    ph = placeholders(conn, 5)
    await conn.execute_query(
        "INSERT INTO ui_snapshots (sha256, kind, content_type, content, created_at) "
        f"VALUES ({', '.join(ph)}) ON CONFLICT (sha256) DO NOTHING",
        [snapshot.sha256, snapshot.kind, snapshot.content_type, snapshot.content, now or datetime.now(UTC)],
    )


def _validate_target(catalog: CatalogSnapshot, decision: Decision) -> None:
    purpose = catalog.purposes.get(decision.purpose)
    if purpose is None:
        raise UnknownPurpose(f"unknown purpose {decision.purpose!r}", purpose=decision.purpose)
    if decision.channel not in catalog.channels:
        raise UnknownChannel(f"unknown channel {decision.channel!r}", channel=decision.channel)
    if decision.channel not in purpose.channels:
        raise ChannelNotOffered(
            f"purpose {decision.purpose!r} is not offered on channel {decision.channel!r} "
            f"(offered on {', '.join(sorted(purpose.channels))})",
            purpose=decision.purpose,
            channel=decision.channel,
        )


def _event(
    request: RecordRequest,
    subject_pseudonym: str,
    seq: int,
    decision: Decision,
    status: str,
    policy: PolicyInfo,
    now: datetime,
    valid_until: datetime | None,
    prev_hash: str,
    snapshot_sha: str | None,
    evidence: dict[str, Any],
) -> RecordedEvent:
    event_id = str(uuid7())
    body = event_body(
        event_id=event_id,
        subject=subject_pseudonym,
        seq=seq,
        purpose=decision.purpose,
        channel=decision.channel,
        action=decision.action,
        status=status,
        policy=policy.reference,
        touchpoint=request.touchpoint,
        method=request.method,
        actor={"type": request.actor_type, "id": request.actor_id},
        ui_snapshot=snapshot_sha,
        evidence=evidence,
        recorded_at=now,
        valid_until=valid_until,
        prev_hash=prev_hash,
    )
    return RecordedEvent(
        id=event_id,
        seq=seq,
        purpose=decision.purpose,
        channel=decision.channel,
        action=decision.action,
        status=status,
        policy_version=policy.label,
        recorded_at=now,
        valid_until=valid_until,
        prev_hash=prev_hash,
        hash=body_hash(body),
        body=body,
    )
