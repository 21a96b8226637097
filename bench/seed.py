"""Seed a migrated, policy-synced database with many subjects, fast, with a VALID ledger.

Bypasses the HTTP API and the ORM, but writes exactly what `server.ledger.append` would have written: per subject a
hash chain (seq 1..n, `prev_hash` linking to the previous event's `hash`, computed with
`server.ledger.chain.event_body` + `body_hash` over the subject's pseudonym), the matching `consent_states` rows and
the subject head (`last_seq`, `head_hash`), and (when the schema has the transparency log) one `log_queue` row
per event, as the recording transaction writes them: the events are committed and waiting for the sequencer.
Event ids are UUID version 7, ascending in queue order, as `Ledger.record` mints them (`server/ids.py`).
Statuses follow `server.ledger.transitions.next_status`, so `python -m server ledger verify` passes on a seeded
database. Receipts (optional per record call) are not written.

Two sets:

- `mixed` (`sub-00000000`, ...): 9 pairs over 5 purposes (newsletter/email, offers/email|sms|phone,
  partners/email|sms, personalisation/email|web, analytics/web); each subject has a record on about half of them:
  granted, refused, withdrawn, pending_confirmation (newsletter/email), expired (valid_until in the past),
  soft_opt_in (offers email/sms), or granted under privacy-policy v1 for partners (reconsent_required since v2).
- `audience` (`aud-00000000`, ...): every subject granted offers/email once, for the audience-export benchmark.

Rows are generated in worker processes (the SHA-256 over RFC 8785 JSON costs ~45 us per event in pure Python)
while the parent inserts: `executemany` in one transaction on SQLite, `COPY` (asyncpg `copy_records_to_table`) in
one transaction on PostgreSQL. Storage matches what Tortoise writes: on SQLite instants as `isoformat(" ")` text in
UTC, UUIDs and JSON as text; on PostgreSQL native uuid, timestamptz and jsonb.

Command line: `python -m bench.seed --database-url URL --secret-key KEY [--prepare] [--subjects N] [--audience M]`.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import multiprocessing
import os
import random
import sqlite3
import sys
import time
import uuid
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import asyncpg
import orjson

from server.consent import read_model
from server.ids import uuid7_at
from server.ledger.chain import GENESIS, body_hash, event_body
from server.ledger.evidence import pseudonym
from server.ledger.transitions import keeps_validity, next_status
from server.policies.snapshot import PolicyInfo, PurposeInfo

PAIRS: tuple[tuple[str, str], ...] = (
    ("newsletter", "email"),
    ("offers", "email"),
    ("offers", "sms"),
    ("offers", "phone"),
    ("partners", "email"),
    ("partners", "sms"),
    ("personalisation", "email"),
    ("personalisation", "web"),
    ("analytics", "web"),
)
AUDIENCE_PAIR = ("offers", "email")
MIXED_PREFIX = "sub-"
AUDIENCE_PREFIX = "aud-"
UNKNOWN_PREFIX = "nobody-"
CHUNK_SUBJECTS = 2_500
RECORD_PROBABILITY = 0.5  # share of (subject, pair) with at least one event

# Outcome of one subject x pair -> weight; filtered per pair by `_outcomes`.
OUTCOME_WEIGHTS = {
    "granted": 45,
    "refused": 15,
    "withdrawn": 12,
    "expired": 8,
    "pending_confirmation": 10,  # newsletter/email only (double opt-in)
    "reconsent_required": 15,  # partners only: granted under privacy-policy v1
    "soft_opt_in": 6,  # offers email/sms only
}
ALLOWED_OUTCOMES = frozenset({"granted", "soft_opt_in"})
TOUCHPOINT, METHOD, ACTOR_TYPE, ACTOR_ID = "import", "bench-seed", "system", "bench"

SUBJECT_COLUMNS = (
    "id",
    "ref",
    "pseudonym",
    "email",
    "phone",
    "locale",
    "last_seq",
    "head_hash",
    "created_at",
    "erased_at",
    "restricted_at",
)
EVENT_COLUMNS = (
    "id",
    "seq",
    "action",
    "status",
    "touchpoint",
    "method",
    "actor_type",
    "actor_id",
    "ui_snapshot_sha256",
    "evidence",
    "recorded_at",
    "valid_until",
    "prev_hash",
    "hash",
    "channel_id",
    "policy_version_id",
    "purpose_id",
    "subject_id",
)
STATE_COLUMNS = (
    "status",
    "since",
    "valid_until",
    "channel_id",
    "event_id",
    "policy_version_id",
    "purpose_id",
    "subject_id",
)

QUEUE_COLUMNS = ("event_id", "event_hash")
# PostgreSQL's subjects carry the consent check's read model, written by the seed as the trigger would have written
# it (server.consent.read_model; the trigger is off while the seed copies, and `seed_postgres` checks a sample).
PG_SUBJECT_COLUMNS = (*SUBJECT_COLUMNS, read_model.COLUMN)


@dataclass(frozen=True)
class SeedCatalog:
    """What generation needs from the database: purposes and published policy versions (picklable)."""

    purposes: dict[str, PurposeInfo]
    policies: dict[str, PolicyInfo]  # "document/version/lang" -> PolicyInfo

    def policy(self, document: str, version: str, lang: str) -> PolicyInfo:
        return self.policies[f"{document}/{version}/{lang}"]

    def latest(self, document: str, lang: str) -> PolicyInfo:
        candidates = [p for p in self.policies.values() if p.document == document and p.lang == lang]
        return max(candidates, key=lambda p: (p.effective_at, int(p.version) if p.version.isdigit() else 0))

    def oldest(self, document: str, lang: str) -> PolicyInfo:
        candidates = [p for p in self.policies.values() if p.document == document and p.lang == lang]
        return min(candidates, key=lambda p: p.effective_at)


@dataclass(frozen=True)
class ChunkSpec:
    kind: str  # "mixed" | "audience"
    start: int
    count: int
    seed: int
    dialect: str  # "sqlite" | "postgres"
    secret_key: str
    now: datetime
    catalog: SeedCatalog
    sample_every: int  # keep expected answers for every n-th subject (0: none)


@dataclass
class ChunkRows:
    subjects: list[tuple[Any, ...]] = field(default_factory=list)
    events: list[tuple[Any, ...]] = field(default_factory=list)
    states: list[tuple[Any, ...]] = field(default_factory=list)
    subject_ids: list[str] = field(default_factory=list)
    expected: list[tuple[str, str, str, str]] = field(default_factory=list)  # (ref, purpose, channel, reason)
    outcomes: dict[str, int] = field(default_factory=dict)
    allowed: dict[str, int] = field(default_factory=dict)  # "purpose/channel" -> subjects allowed by a record


@dataclass
class SeedResult:
    kind: str
    subjects: int
    events: int
    states: int
    seconds: float
    subject_ids: list[str]  # mixed set only: every subject id (for the baseline route)
    expected: list[tuple[str, str, str, str]]  # sampled (ref, purpose, channel, expected reason)
    outcomes: dict[str, int]
    allowed: dict[str, int] = field(default_factory=dict)  # "purpose/channel" -> subjects allowed by a record


def ref_of(kind: str, index: int) -> str:
    return f"{AUDIENCE_PREFIX if kind == 'audience' else MIXED_PREFIX}{index:08d}"


def _outcomes(purpose: PurposeInfo, channel: str) -> tuple[list[str], list[int]]:
    names = []
    for name in OUTCOME_WEIGHTS:
        if name == "pending_confirmation" and not (purpose.double_opt_in and channel == "email"):
            continue
        if name == "reconsent_required" and purpose.code != "partners":
            continue
        if name == "soft_opt_in" and not (
            purpose.marketing and not purpose.third_parties and channel in {"email", "sms"}
        ):
            continue
        names.append(name)
    return names, [OUTCOME_WEIGHTS[n] for n in names]


def _between(rng: random.Random, low: datetime, high: datetime) -> datetime:
    span = max((high - low).total_seconds(), 1.0)
    return low + timedelta(seconds=rng.random() * span)


Plan = list[tuple[datetime, str, PolicyInfo]]  # (recorded_at, action, policy) in time order, for one pair


def _plan(
    rng: random.Random, catalog: SeedCatalog, purpose: PurposeInfo, channel: str, outcome: str, lang: str, now: datetime
) -> Plan:
    """The decisions that lead one subject x pair to `outcome`, in time order, all before `now`."""
    document = "cookie-policy" if channel == "web" else "privacy-policy"
    current = catalog.latest(document, lang)
    oldest = catalog.oldest(document, lang)
    recent_start = current.effective_at if current.effective_at < now - timedelta(days=2) else now - timedelta(days=60)
    recent_start = max(recent_start, now - timedelta(days=300))
    ceiling = now - timedelta(minutes=5)
    double = purpose.double_opt_in and channel == "email"
    if outcome == "expired":
        days = (purpose.validity_days or 365) + rng.randint(2, 200)
        start = now - timedelta(days=days, seconds=rng.randint(0, 86_000))
        plan: Plan = [(start, "grant", oldest)]
        if double:
            plan.append((start + timedelta(minutes=rng.randint(1, 600)), "confirm", oldest))
        return plan
    if outcome == "reconsent_required":
        newer = [p for p in catalog.policies.values() if p.document == document and p.lang == lang and p.material]
        cutoff = min((p.effective_at for p in newer), default=now)
        low = max(oldest.effective_at, cutoff - timedelta(days=(purpose.validity_days or 365) - 30))
        return [(_between(rng, low, cutoff - timedelta(days=1)), "grant", oldest)]
    first = _between(rng, recent_start, ceiling - timedelta(days=1))
    if outcome == "refused":
        return [(first, "deny", current)]
    if outcome == "soft_opt_in":
        return [(first, "soft_opt_in", current)]
    if outcome == "pending_confirmation":
        return [(first, "grant", current)]
    plan = [(first, "grant", current)]
    if double:
        plan.append((first + timedelta(seconds=rng.randint(30, 86_000)), "confirm", current))
    if outcome == "withdrawn":
        plan.append((_between(rng, plan[-1][0] + timedelta(seconds=1), ceiling), "withdraw", current))
    return plan


def _ts(dialect: str, value: datetime | None) -> Any:
    if value is None:
        return None
    return value.isoformat(" ") if dialect == "sqlite" else value


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


# Seeded event ids are stamped as if the set's subjects had been recorded one per millisecond, in index order,
# ending ~11.6 days before the seed ran (1e9 subjects fit).
SEED_CLOCK_SPAN_MS = 10**9


def _event_uuid(rng: random.Random, now: datetime, index: int, seq: int) -> str:
    """A version 7 id like those `Ledger.record` makes (`server.ids.uuid7`), in queue order: the recording
    transaction queues an event as it mints its id, so in a real log ids ascend in queue order (bench/README.md)."""
    unix_ms = int(now.timestamp() * 1000) - SEED_CLOCK_SPAN_MS + index
    return str(uuid7_at(unix_ms, seq << 62 | rng.getrandbits(62)))


def generate_chunk(spec: ChunkSpec) -> ChunkRows:
    """Rows for subjects [start, start+count) of one set; deterministic for a given seed."""
    rng = random.Random(f"{spec.kind}:{spec.seed}:{spec.start}")
    catalog, now, dialect = spec.catalog, spec.now, spec.dialect
    out = ChunkRows()
    evidence = "{}"
    for index in range(spec.start, spec.start + spec.count):
        ref = ref_of(spec.kind, index)
        lang = "fr" if rng.random() < 0.6 else "en"
        plans: list[tuple[str, str, str, Plan]] = []  # (purpose, channel, outcome, plan)
        if spec.kind == "audience":
            purpose_code, channel = AUDIENCE_PAIR
            purpose = catalog.purposes[purpose_code]
            plans.append(
                (purpose_code, channel, "granted", _plan(rng, catalog, purpose, channel, "granted", lang, now))
            )
        else:
            chosen = [pair for pair in PAIRS if rng.random() < RECORD_PROBABILITY] or [rng.choice(PAIRS)]
            for purpose_code, channel in chosen:
                purpose = catalog.purposes[purpose_code]
                names, weights = _outcomes(purpose, channel)
                outcome = rng.choices(names, weights)[0]
                plans.append(
                    (purpose_code, channel, outcome, _plan(rng, catalog, purpose, channel, outcome, lang, now))
                )
        timeline = sorted(
            (
                (at, n, purpose_code, channel, action, policy)
                for purpose_code, channel, _, plan in plans
                for n, (at, action, policy) in enumerate(plan)
            ),
            key=lambda item: (item[0], item[1]),
        )
        subject_id = _uuid(rng)
        pseudo = pseudonym(spec.secret_key, ref)
        head = GENESIS
        states: dict[tuple[str, str], tuple[Any, ...]] = {}
        statuses: dict[tuple[str, str], str] = {}
        for seq, (at, _, purpose_code, channel, action, policy) in enumerate(timeline, start=1):
            purpose = catalog.purposes[purpose_code]
            status = next_status(action, statuses.get((purpose_code, channel)), purpose, channel)
            valid_until = (
                at + timedelta(days=purpose.validity_days) if purpose.validity_days and keeps_validity(status) else None
            )
            event_id = _event_uuid(rng, now, index, seq)
            digest = body_hash(
                event_body(
                    event_id=event_id,
                    subject=pseudo,
                    seq=seq,
                    purpose=purpose_code,
                    channel=channel,
                    action=action,
                    status=status,
                    policy=policy.reference,
                    touchpoint=TOUCHPOINT,
                    method=METHOD,
                    actor={"type": ACTOR_TYPE, "id": ACTOR_ID},
                    ui_snapshot=None,
                    evidence={},
                    recorded_at=at,
                    valid_until=valid_until,
                    prev_hash=head,
                )
            )
            recorded, until = _ts(dialect, at), _ts(dialect, valid_until)
            out.events.append(
                (
                    event_id,
                    seq,
                    action,
                    status,
                    TOUCHPOINT,
                    METHOD,
                    ACTOR_TYPE,
                    ACTOR_ID,
                    None,
                    evidence,
                    recorded,
                    until,
                    head,
                    digest,
                    channel,
                    policy.id,
                    purpose_code,
                    subject_id,
                )
            )
            statuses[(purpose_code, channel)] = status
            states[(purpose_code, channel)] = (
                status,
                recorded,
                until,
                channel,
                event_id,
                policy.id,
                purpose_code,
                subject_id,
            )
            head = digest
        out.states.extend(states.values())
        created = timeline[0][0] - timedelta(seconds=1)
        subject: tuple[Any, ...] = (
            subject_id,
            ref,
            pseudo,
            None,
            None,
            lang,
            len(timeline),
            head,
            _ts(dialect, created),
            None,
            None,
        )
        if dialect == "postgres":
            subject += (_check_states(states.values()),)
        out.subjects.append(subject)
        if spec.kind == "mixed":
            out.subject_ids.append(subject_id)
        outcomes = {(p, c): o for p, c, o, _ in plans}
        for purpose_code, channel, outcome, _ in plans:
            out.outcomes[outcome] = out.outcomes.get(outcome, 0) + 1
            if outcome in ALLOWED_OUTCOMES:
                key = f"{purpose_code}/{channel}"
                out.allowed[key] = out.allowed.get(key, 0) + 1
        if spec.sample_every and index % spec.sample_every == 0:
            pairs = PAIRS if spec.kind == "mixed" else (AUDIENCE_PAIR,)
            for purpose_code, channel in pairs:
                outcome_or_none = outcomes.get((purpose_code, channel))
                reason = _expected_reason(catalog, purpose_code, channel, outcome_or_none)
                out.expected.append((ref, purpose_code, channel, reason))
    return out


def _check_states(states: Iterable[tuple[Any, ...]]) -> str | None:
    """A subject's `check_states` (server.consent.read_model) from its state rows (STATE_COLUMNS, PostgreSQL)."""
    found = {
        read_model.key(purpose, channel): [
            status,
            read_model.instant_text(since),
            read_model.instant_text(until),
            policy_id,
            event_id,
        ]
        for status, since, until, channel, event_id, policy_id, purpose, _ in states
    }
    return orjson.dumps(found).decode() if found else None


def _expected_reason(catalog: SeedCatalog, purpose: str, channel: str, outcome: str | None) -> str:
    """The `reason` the API must answer now, derived from how the data was built (not from `decide`)."""
    if outcome is not None:
        return outcome
    basis = catalog.purposes[purpose].basis_for(channel)
    return basis if basis in ("legitimate_interest", "necessary") else "no_record"


# --- reading the catalogue the seed needs ------------------------------------------------------------------


def _purpose(row: dict[str, Any]) -> PurposeInfo:
    def js(value: Any) -> Any:
        return orjson.loads(value) if isinstance(value, str | bytes) else value

    return PurposeInfo(
        code=row["code"],
        legal_basis=row["legal_basis"],
        channels=frozenset(js(row["channels"])),
        channel_basis=dict(js(row["channel_basis"])),
        validity_days=row["validity_days"],
        double_opt_in=bool(row["double_opt_in"]),
        marketing=bool(row["marketing"]),
        banner_category=row["banner_category"],
        third_parties=tuple(js(row["third_parties"])),
        titles=dict(js(row["titles"])),
        descriptions=dict(js(row["descriptions"])),
    )


def _policy(row: dict[str, Any]) -> PolicyInfo:
    effective = row["effective_at"]
    if isinstance(effective, str):
        effective = datetime.fromisoformat(effective)
    return PolicyInfo(
        id=row["id"],
        document=row["document"],
        version=row["version"],
        lang=row["lang"],
        sha256=row["sha256"],
        effective_at=effective.astimezone(UTC),
        material=bool(row["material"]),
        purposes=(),  # not read: the seed picks a version per purpose itself
        title="",
    )


_CATALOG_PURPOSES = (
    "SELECT code, legal_basis, channel_basis, channels, validity_days, double_opt_in, marketing, banner_category, "
    "third_parties, titles, descriptions FROM purposes"
)
_CATALOG_POLICIES = "SELECT id, document, version, lang, sha256, effective_at, material FROM policy_versions"


def _check_catalog(catalog: SeedCatalog) -> SeedCatalog:
    for purpose, channel in PAIRS:
        info = catalog.purposes.get(purpose)
        if info is None or channel not in info.channels:
            raise SystemExit(f"seed: {purpose}/{channel} is not declared in purposes.yaml (run policies sync first)")
    for document in ("privacy-policy", "cookie-policy"):
        for lang in ("fr", "en"):
            if not any(p.document == document and p.lang == lang for p in catalog.policies.values()):
                raise SystemExit(f"seed: no published {document} in {lang!r} (run policies sync first)")
    return catalog


def sqlite_catalog(conn: sqlite3.Connection) -> SeedCatalog:
    conn.row_factory = sqlite3.Row
    try:
        purposes = {row["code"]: _purpose(dict(row)) for row in conn.execute(_CATALOG_PURPOSES)}
        policies = [_policy(dict(row)) for row in conn.execute(_CATALOG_POLICIES)]
    finally:
        conn.row_factory = None
    return _check_catalog(SeedCatalog(purposes, {f"{p.document}/{p.version}/{p.lang}": p for p in policies}))


async def postgres_catalog(conn: asyncpg.Connection) -> SeedCatalog:
    purposes = {row["code"]: _purpose(dict(row)) for row in await conn.fetch(_CATALOG_PURPOSES)}
    policies = [_policy(dict(row)) for row in await conn.fetch(_CATALOG_POLICIES)]
    return _check_catalog(SeedCatalog(purposes, {f"{p.document}/{p.version}/{p.lang}": p for p in policies}))


# --- generation pipeline and bulk inserts ------------------------------------------------------------------


def _specs(
    kind: str, total: int, start: int, dialect: str, secret: str, catalog: SeedCatalog, seed: int, sample: int
) -> list[ChunkSpec]:
    now = datetime.now(UTC)
    sample_every = max(1, total // sample) if sample else 0
    return [
        ChunkSpec(
            kind=kind,
            start=begin,
            count=min(CHUNK_SUBJECTS, start + total - begin),
            seed=seed,
            dialect=dialect,
            secret_key=secret,
            now=now,
            catalog=catalog,
            sample_every=sample_every,
        )
        for begin in range(start, start + total, CHUNK_SUBJECTS)
    ]


def _chunks(specs: list[ChunkSpec], workers: int) -> Generator[ChunkRows, None, None]:
    """Generated chunks in order; at most `workers + 1` in flight so memory stays bounded."""
    if workers <= 1 or len(specs) <= 1:
        for spec in specs:
            yield generate_chunk(spec)
        return
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        pending: list[concurrent.futures.Future[ChunkRows]] = []
        queue = iter(specs)
        for spec in queue:
            pending.append(pool.submit(generate_chunk, spec))
            if len(pending) > workers:
                break
        while pending:
            done = pending.pop(0).result(timeout=600)
            nxt = next(queue, None)
            if nxt is not None:
                pending.append(pool.submit(generate_chunk, nxt))
            yield done


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _collect(result: SeedResult, rows: ChunkRows) -> None:
    result.subjects += len(rows.subjects)
    result.events += len(rows.events)
    result.states += len(rows.states)
    result.subject_ids.extend(rows.subject_ids)
    result.expected.extend(rows.expected)
    for name, count in rows.outcomes.items():
        result.outcomes[name] = result.outcomes.get(name, 0) + count
    for key, count in rows.allowed.items():
        result.allowed[key] = result.allowed.get(key, 0) + count


_EVENT_ID, _EVENT_HASH = EVENT_COLUMNS.index("id"), EVENT_COLUMNS.index("hash")


def _queue_rows(rows: ChunkRows) -> list[tuple[str, str]]:
    """One `log_queue` row per event (its id and hash), as `Ledger.record` writes in the recording transaction."""
    return [(event[_EVENT_ID], event[_EVENT_HASH]) for event in rows.events]


def _insert_sql(table: str, columns: tuple[str, ...]) -> str:
    cols = ", ".join(f'"{c}"' for c in columns)
    return f'INSERT INTO "{table}" ({cols}) VALUES ({", ".join("?" * len(columns))})'


def seed_sqlite(
    path: str,
    secret_key: str,
    count: int,
    *,
    kind: str = "mixed",
    start: int = 0,
    seed: int = 1,
    sample: int = 500,
    workers: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> SeedResult:
    """Seed `count` subjects of set `kind` into the SQLite file at `path` (one transaction)."""
    started = time.perf_counter()
    conn = sqlite3.connect(path, isolation_level=None, timeout=60)
    result = SeedResult(kind, 0, 0, 0, 0.0, [], [], {})
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = OFF")  # a benchmark fixture: durability of the seed does not matter
        conn.execute("PRAGMA cache_size = -262144")
        catalog = sqlite_catalog(conn)
        specs = _specs(kind, count, start, "sqlite", secret_key, catalog, seed, sample)
        queue = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'log_queue'").fetchone()
        conn.execute("BEGIN IMMEDIATE")
        try:
            for rows in _chunks(specs, workers or default_workers()):
                conn.executemany(_insert_sql("subjects", SUBJECT_COLUMNS), rows.subjects)
                conn.executemany(_insert_sql("consent_events", EVENT_COLUMNS), rows.events)
                conn.executemany(_insert_sql("consent_states", STATE_COLUMNS), rows.states)
                if queue:
                    conn.executemany(_insert_sql("log_queue", QUEUE_COLUMNS), _queue_rows(rows))
                _collect(result, rows)
                if progress:
                    progress(f"{kind}: {result.subjects:,}/{count:,} subjects")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    result.seconds = time.perf_counter() - started
    return result


def asyncpg_dsn(database_url: str) -> str:
    parts = urlsplit(database_url)
    return urlunsplit(("postgresql", parts.netloc, parts.path, "", ""))


async def seed_postgres(
    database_url: str,
    secret_key: str,
    count: int,
    *,
    kind: str = "mixed",
    start: int = 0,
    seed: int = 1,
    sample: int = 500,
    workers: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> SeedResult:
    """Seed `count` subjects of set `kind` with COPY in one transaction, then VACUUM ANALYZE."""
    started = time.perf_counter()
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    result = SeedResult(kind, 0, 0, 0, 0.0, [], [], {})
    try:
        catalog = await postgres_catalog(conn)
        specs = _specs(kind, count, start, "postgres", secret_key, catalog, seed, sample)
        queue = await conn.fetchval("SELECT to_regclass('log_queue') IS NOT NULL")
        loop = asyncio.get_running_loop()
        chunks = _chunks(specs, workers or default_workers())
        try:
            async with conn.transaction():
                # One trigger run a state would recompute each subject's read model again, after the seed wrote it.
                await conn.execute(f"ALTER TABLE consent_states DISABLE TRIGGER {read_model.TRIGGER}")
                while (rows := await loop.run_in_executor(None, next, chunks, None)) is not None:
                    await conn.copy_records_to_table("subjects", records=rows.subjects, columns=PG_SUBJECT_COLUMNS)
                    await conn.copy_records_to_table("consent_events", records=rows.events, columns=EVENT_COLUMNS)
                    await conn.copy_records_to_table("consent_states", records=rows.states, columns=STATE_COLUMNS)
                    if queue:
                        await conn.copy_records_to_table("log_queue", records=_queue_rows(rows), columns=QUEUE_COLUMNS)
                    _collect(result, rows)
                    if progress:
                        progress(f"{kind}: {result.subjects:,}/{count:,} subjects")
                await conn.execute(f"ALTER TABLE consent_states ENABLE TRIGGER {read_model.TRIGGER}")
                sampled = await conn.fetch(
                    "SELECT id FROM subjects WHERE ref = ANY($1::text[])", sorted({ref for ref, *_ in result.expected})
                )
                stale = await conn.fetch(read_model.MISMATCHES, [row["id"] for row in sampled])
                if stale:
                    raise RuntimeError(f"the seed wrote a read model the trigger would not have: {stale[:3]}")
        finally:
            await loop.run_in_executor(None, chunks.close)
        tables = "subjects, consent_events, consent_states" + (", log_queue" if queue else "")
        await conn.execute(f"VACUUM (ANALYZE) {tables}")
    finally:
        await conn.close()
    result.seconds = time.perf_counter() - started
    return result


def sqlite_file(database_url: str) -> str | None:
    parts = urlsplit(database_url)
    return unquote(parts.netloc + parts.path) if parts.scheme == "sqlite" else None


async def seed_database(database_url: str, secret_key: str, count: int, **options: Any) -> SeedResult:
    """Seed either backend; SQLite work runs in a thread so the caller's event loop stays free."""
    path = sqlite_file(database_url)
    if path is not None:
        return await asyncio.to_thread(seed_sqlite, path, secret_key, count, **options)
    return await seed_postgres(database_url, secret_key, count, **options)


async def prepare_database(database_url: str, policy_dir: Path) -> None:
    """Apply migrations and sync the policies (what `migrate` + `policies sync` do)."""
    from tortoise import Tortoise
    from tortoise.backends.base.executor import EXECUTOR_CACHE

    from server.db import tortoise_config
    from server.migrate import apply_migrations
    from server.policies.sync import sync_policies

    EXECUTOR_CACHE.clear()  # Tortoise caches SQL per connection name, not per dialect
    await apply_migrations(database_url)
    await Tortoise.init(config=tortoise_config(database_url))
    try:
        await sync_policies(policy_dir)
    finally:
        await Tortoise.close_connections()


async def verify(database_url: str) -> int:
    """What `python -m server ledger verify` does: every chain recomputed, the projection compared with a replay."""
    from tortoise import Tortoise

    from server.db import tortoise_config
    from server.ledger.verify import verify_ledger

    await Tortoise.init(config=tortoise_config(database_url))
    try:
        report = await verify_ledger()
    finally:
        await Tortoise.close_connections()
    for broken in report.breaks[:10]:
        print(f"BROKEN {broken}")
    verdict = "OK" if report.ok else f"FAILED ({len(report.breaks)} broken chain(s))"
    print(f"ledger verify: {report.subjects} subjects, {report.events} events: {verdict}", flush=True)
    return 0 if report.ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.seed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True, help="sqlite://PATH or postgres://USER@HOST:PORT/DB")
    parser.add_argument("--secret-key", required=True, help="the server's SECRET_KEY (pseudonyms are HMACs)")
    parser.add_argument("--subjects", type=int, default=100_000, help="mixed-state subjects (default 100,000)")
    parser.add_argument("--audience", type=int, default=0, help="all-granted offers/email subjects (e.g. 1000000)")
    parser.add_argument("--prepare", action="store_true", help="apply migrations and sync policies first")
    parser.add_argument("--verify", action="store_true", help="then run the ledger verification (as `ledger verify`)")
    parser.add_argument("--policy-dir", type=Path, default=Path(__file__).resolve().parent.parent / "policy_docs")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=default_workers())
    args = parser.parse_args(argv)

    async def run() -> int:
        if args.prepare:
            await prepare_database(args.database_url, args.policy_dir)
        for kind, count in (("mixed", args.subjects), ("audience", args.audience)):
            if count <= 0:
                continue
            result = await seed_database(
                args.database_url,
                args.secret_key,
                count,
                kind=kind,
                seed=args.seed,
                workers=args.workers,
                progress=lambda line: print(line, file=sys.stderr, flush=True),
            )
            summary = {
                "kind": kind,
                "subjects": result.subjects,
                "events": result.events,
                "states": result.states,
                "seconds": round(result.seconds, 2),
                "outcomes": result.outcomes,
            }
            print(orjson.dumps(summary).decode(), flush=True)
        if args.verify:
            return await verify(args.database_url)
        return 0

    return asyncio.run(run())


if __name__ == "__main__":
    raise SystemExit(main())
