"""Auditing the transparency log (part of `python -m server ledger verify`).

Independent of the stored Merkle nodes: roots are recomputed from the events' own hashes, so a deleted, inserted
or altered event shows up against every signed checkpoint that covered it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

from joserfc import jws
from joserfc.errors import JoseError

from server.auth.keys import ALGORITHM, KeyStore
from server.models import Checkpoint, ConsentEvent, LogEntry, LogQueue
from server.proof import merkle
from server.proof.log import checkpoint_payload

PAGE = 10_000


def _signed_log_id(payload: bytes) -> str | None:
    try:
        value = json.loads(payload).get("log_id")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


@dataclass
class LogReport:
    entries: int = 0
    checkpoints: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # facts a reader must know that break nothing


async def audit_log(keys: KeyStore, log_id: str, stored_at: datetime | None = None) -> LogReport:
    """`log_id`: the log's stored id; `stored_at`: when it was stored (None: not yet, or unknown). A checkpoint
    signed for another id is a problem, except one signed before the id was stored whose fields and root match: an
    older release derived the id from PUBLIC_URL at run time, and such a checkpoint says only that PUBLIC_URL
    changed then (a note)."""
    report = LogReport()
    checkpoints = {c.tree_size: c for c in await Checkpoint.all()}
    report.checkpoints = len(checkpoints)
    other_logs: dict[str, list[int]] = {}  # checkpoints signed, and stored as signed, for another log id
    earlier_ids: dict[str, list[int]] = {}  # the same, signed before the log's id was stored
    for checkpoint in checkpoints.values():
        try:
            payload = jws.deserialize_compact(checkpoint.jws, keys.key_set, algorithms=[ALGORITHM]).payload
        except (JoseError, ValueError):
            report.problems.append(f"checkpoint {checkpoint.tree_size}: signature does not verify")
            continue
        fields = (checkpoint.tree_size, checkpoint.root_hash, checkpoint.timestamp)
        if payload != checkpoint_payload(log_id, *fields):
            signed_for = _signed_log_id(payload)
            if signed_for is not None and payload == checkpoint_payload(signed_for, *fields):
                # The fields match: not tampering.
                legacy = stored_at is None or checkpoint.timestamp < stored_at
                (earlier_ids if legacy else other_logs).setdefault(signed_for, []).append(checkpoint.tree_size)
            else:
                report.problems.append(f"checkpoint {checkpoint.tree_size}: stored fields differ from the signed ones")
    for signed_for, sizes in other_logs.items():
        report.problems.append(
            f"checkpoints {', '.join(map(str, sorted(sizes)))}: signed for the log {signed_for!r}, not for "
            f"{log_id!r}, the log's stored id"
        )
    for signed_for, sizes in earlier_ids.items():
        report.notes.append(
            f"checkpoints {', '.join(map(str, sorted(sizes)))}: signed for the log id {signed_for!r} before the log's "
            f"id {log_id!r} was stored (PUBLIC_URL changed under an older release); their roots are checked below"
        )

    frontier: list[tuple[int, bytes]] = []  # (size of perfect subtree, hash), left to right
    position = 0
    while True:
        rows = (
            await LogEntry.filter(position__gte=position)
            .order_by("position")
            .limit(PAGE)
            .values("position", "event_id", "leaf_hash")
        )
        if not rows:
            break
        hashes = {
            str(e["id"]): e["hash"]
            for e in await ConsentEvent.filter(id__in=[r["event_id"] for r in rows]).values("id", "hash")
        }
        for row in rows:
            if row["position"] != position:
                report.problems.append(f"log: position {position} is missing (next is {row['position']})")
                return report
            event_hash = hashes.get(str(row["event_id"]))
            if event_hash is None:
                report.problems.append(f"log position {position}: its event no longer exists")
                return report
            leaf = merkle.leaf_hash(bytes.fromhex(event_hash))
            if leaf.hex() != row["leaf_hash"]:
                report.problems.append(f"log position {position}: the event's hash changed after it was logged")
            frontier.append((1, leaf))
            while len(frontier) > 1 and frontier[-1][0] == frontier[-2][0]:
                (size, right), (_, left) = frontier.pop(), frontier.pop()
                frontier.append((size * 2, merkle.node_hash(left, right)))
            position += 1
            report.entries = position
            if position in checkpoints:
                root = _root(frontier)
                if root.hex() != checkpoints[position].root_hash:
                    report.problems.append(
                        f"checkpoint {position}: the log recomputed from the events does not match its signed root"
                    )
    beyond = [size for size in checkpoints if size > position]
    if beyond:
        report.problems.append(f"checkpoint {max(beyond)}: the log has only {position} entries (events deleted)")
    logged = await LogEntry.all().count()
    queued = await LogQueue.all().count()
    events = await ConsentEvent.all().count()
    if logged + queued < events:
        report.problems.append(
            f"log: {events} events but {logged} logged and {queued} queued (an event was inserted out of band)"
        )
    elif logged + queued > events:
        report.problems.append(f"log: {events} events but {logged} logged and {queued} queued (an event was deleted)")
    return report


def _root(frontier: list[tuple[int, bytes]]) -> bytes:
    """RFC 6962 root from the perfect subtrees, folded right to left."""
    value = frontier[-1][1]
    for _, left in reversed(frontier[:-1]):
        value = merkle.node_hash(left, value)
    return value
