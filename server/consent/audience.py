"""Audience export: every subject currently allowed for a purpose x channel, streamed as NDJSON.

Full export (`since` absent): one line `{"ref": ...}` per allowed subject. Change feed (`since` given): one line
`{"ref", "allowed", "reason"}` per subject whose answer may have changed after `since`: a new decision, an expiry
crossed, an erasure, a restriction or its lifting, a new subject where the basis needs no consent, or (for the whole
purpose) a material policy version that came into force or a change of its legal basis or channels. Its cost
follows the changes, not the subjects: each kind is read from an index of its own. The cursor handed back lies
`server.visibility.FEED_OVERLAP` before the read, so that a change committed just after it is not missed.
Expiry and re-consent are applied at read time here too, so the export always agrees with the check API.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime
from json.encoder import encode_basestring  # a str as a JSON string, as orjson writes it (C)
from typing import Any

import orjson

from server.consent.decide import StateView, SubjectFlags, decide
from server.consent.read_model import instant_text
from server.consent.reader import StateReader, since_of
from server.models import PurposeBasisChange
from server.models.ledger import AUDIENCE_STATE_INDEX, CHANGED_STATE_INDEX, EXPIRING_STATE_INDEX
from server.models.subjects import AUDIENCE_SUBJECT_INDEX, CREATED_INDEX, FLAGS_CHANGED_INDEX
from server.policies.snapshot import CatalogSnapshot, PurposeInfo

# Rows per fetch: the event loop is held ~5 ms at most; a larger fetch holds it longer and exports no faster
# (bench/README.md, "Audience export: fetch size and lines").
CHUNK = 1000
ALLOWED_STATUSES = ("granted", "soft_opt_in")


def _param(reader: StateReader, value: datetime) -> Any:
    # SQLite stores Tortoise's text form (UTC); same-offset strings compare in time order.
    return instant_text(value) if reader.dialect == "sqlite" else value


def _marks(reader: StateReader, count: int) -> list[str]:
    prefix = "$" if reader.dialect == "postgres" else "?"  # numbered: a parameter may be used twice
    return [f"{prefix}{i}" for i in range(1, count + 1)]


def _ts(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


async def export_allowed(
    reader: StateReader, catalog: CatalogSnapshot, purpose: PurposeInfo, channel: str, now: datetime
) -> AsyncIterator[bytes]:
    basis = purpose.basis_for(channel)
    p1, p2, p3 = _marks(reader, 3)
    if basis in ("legitimate_interest", "necessary"):
        # Opt-out basis: everyone not refused, withdrawn or objected (and not erased or restricted).
        sql = (
            "SELECT s.ref, c.status, c.since, c.policy_version_id FROM subjects s "
            f"LEFT JOIN consent_states c ON c.subject_id = s.id AND c.purpose_id = {p1} AND c.channel_id = {p2} "
            "WHERE s.erased_at IS NULL AND s.restricted_at IS NULL "
            f"AND (c.status IS NULL OR (c.status IN ('granted', 'soft_opt_in') "
            f"AND (c.valid_until IS NULL OR c.valid_until > {p3})))"
        )
    else:
        # The states of the pair come in subject order, so the subjects are looked up in index order (SQLite is told
        # which indexes: without statistics it would take the unique index on id and read each table row).
        by_pair, by_id = (
            (f"INDEXED BY {AUDIENCE_STATE_INDEX}", f"INDEXED BY {AUDIENCE_SUBJECT_INDEX}")
            if reader.dialect == "sqlite"
            else ("", "")
        )
        sql = (
            f"SELECT s.ref, c.status, c.since, c.policy_version_id FROM consent_states c {by_pair} "
            f"JOIN subjects s {by_id} ON s.id = c.subject_id "
            f"WHERE c.purpose_id = {p1} AND c.channel_id = {p2} AND c.status IN ('granted', 'soft_opt_in') "
            f"AND (c.valid_until IS NULL OR c.valid_until > {p3}) "
            "AND s.erased_at IS NULL AND s.restricted_at IS NULL "
            # The order both indexes already give (SQLite sorts nothing). Without it PostgreSQL prefers a hash join
            # that first builds a table of every subject: the first row after ~0.8 s, against a few ms for the
            # merge join of the two indexes, which is also faster in all (bench/README.md, "Where an audience
            # export's time goes").
            "ORDER BY c.subject_id"
        )
    stale = _reconsent_rule(catalog, purpose.code, now)
    quote = encode_basestring
    # A chunk's lines as one text, encoded once, not a bytes concatenation and an orjson call a row: 0.10-0.16
    # against 0.25-0.38 us a row (bench/README.md, "Audience export: fetch size and lines").
    async for rows in reader.stream(sql, [purpose.code, channel, _param(reader, now)], CHUNK):
        if stale is not None:
            lines = [
                f'{{"ref":{quote(ref)}}}\n'
                for ref, status, since, policy_id in rows
                if status != "granted" or not stale(policy_id, since)
            ]
        else:  # no version of the purpose's policies asks for re-consent now: every row read is allowed
            lines = [f'{{"ref":{quote(ref)}}}\n' for ref, _status, _since, _policy in rows]
        if lines:
            yield "".join(lines).encode()


async def export_changes(
    reader: StateReader,
    catalog: CatalogSnapshot,
    purpose: PurposeInfo,
    channel: str,
    since: datetime,
    now: datetime,
) -> AsyncIterator[bytes]:
    sql = _changes_sql(
        reader,
        opt_out=purpose.basis_for(channel) in ("legitimate_interest", "necessary"),
        # A version published back-dated (in force before its publication) counts from its publication: a cursor
        # taken before that saw no reason to re-read the grants.
        material=any(purpose.code in m.purposes and since < m.visible_from <= now for m in catalog.materials),
        rebased=await PurposeBasisChange.filter(
            purpose_id=purpose.code, changed_at__gt=since, changed_at__lte=now
        ).exists(),
    )
    params = [purpose.code, channel, _param(reader, since), _param(reader, now)]
    dumps = orjson.dumps
    async for rows in reader.stream(sql, params, CHUNK):
        out = []
        for ref, erased, restricted, status, state_since, valid_until, policy_id, event_id in rows:
            state = (
                StateView(status, since_of(state_since), _ts(valid_until), policy_id, str(event_id))
                if status is not None
                else None
            )
            answer = decide(catalog, SubjectFlags(_ts(erased), _ts(restricted)), state, purpose.code, channel, now)
            out.append(dumps({"ref": ref, "allowed": answer.allowed, "reason": answer.reason}) + b"\n")
        if out:
            yield b"".join(out)


def _changes_sql(reader: StateReader, *, opt_out: bool, material: bool, rebased: bool) -> str:
    """The subjects whose answer for the pair may have changed after the cursor, each read from an index of its own
    (so a poll costs what changed, not every subject), then answered like a check. Parameters: purpose, channel,
    cursor, now. A subject may be found by several of the branches; UNION keeps it once."""
    purpose, channel, cursor, now = _marks(reader, 4)
    sqlite = reader.dialect == "sqlite"
    hint: Callable[[str], str] = (lambda index: f"INDEXED BY {index}") if sqlite else (lambda index: "")
    pair = f"purpose_id = {purpose} AND channel_id = {channel}"
    branches = [
        # a decision recorded
        f"SELECT subject_id AS id FROM consent_states {hint(CHANGED_STATE_INDEX)} WHERE {pair} AND since > {cursor}",
        # a validity period that ran out
        f"SELECT subject_id FROM consent_states {hint(EXPIRING_STATE_INDEX)} "
        f"WHERE {pair} AND valid_until > {cursor} AND valid_until <= {now}",
        # erased, restricted, or a restriction lifted
        f"SELECT id FROM subjects {hint(FLAGS_CHANGED_INDEX)} WHERE flags_changed_at > {cursor}",
    ]
    if opt_out:  # a new subject is allowed on this pair without any decision
        branches.append(f"SELECT id FROM subjects {hint(CREATED_INDEX)} WHERE created_at > {cursor}")
    if material:  # a material policy version came into force: every grant of the pair may need re-consent
        branches.append(f"SELECT subject_id FROM consent_states WHERE {pair} AND status = 'granted'")
    if rebased:  # the purpose's legal basis or channels changed: every subject without a decision may have flipped
        branches.append("SELECT id FROM subjects")
    return (
        "SELECT s.ref, s.erased_at, s.restricted_at, c.status, c.since, c.valid_until, c.policy_version_id, c.event_id "
        f"FROM ({' UNION '.join(branches)}) AS changed JOIN subjects s ON s.id = changed.id "
        f"LEFT JOIN consent_states c ON c.subject_id = s.id AND c.purpose_id = {purpose} AND c.channel_id = {channel}"
    )


def _reconsent_rule(catalog: CatalogSnapshot, purpose: str, now: datetime) -> Callable[[int, Any], bool] | None:
    """Per grant policy, as `CatalogSnapshot.reconsent_rules` precomputes it; None when no version of the purpose's
    policies asks for re-consent at `now` (no grant is stale)."""
    rules = catalog.reconsent_rules(purpose, now)
    if not any(same_doc or threshold for same_doc, threshold in rules.values()):
        return None

    def stale(policy_id: int, since: Any) -> bool:
        same_doc, threshold = rules.get(policy_id, (False, None))
        if same_doc:
            return True
        if threshold is None:
            return False
        granted_at = _ts(since)
        return granted_at is not None and granted_at < threshold

    return stale
