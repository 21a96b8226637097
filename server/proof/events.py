"""Events as exported (the exact object that is hashed, plus `hash` and the log position)."""

from __future__ import annotations

from typing import Any

from server.ledger.chain import event_body
from server.policies.catalog import CatalogSnapshot


def exported_event(row: dict[str, Any], pseudonym: str, catalog: CatalogSnapshot) -> dict[str, Any]:
    policy = catalog.policies_by_id[row["policy_version_id"]]
    body = event_body(
        event_id=str(row["id"]),
        subject=pseudonym,
        seq=row["seq"],
        purpose=row["purpose_id"],
        channel=row["channel_id"],
        action=row["action"],
        status=row["status"],
        policy={"document": policy.document, "version": policy.version, "lang": policy.lang, "sha256": policy.sha256},
        touchpoint=row["touchpoint"],
        method=row["method"],
        actor={"type": row["actor_type"], "id": row["actor_id"]},
        ui_snapshot=row["ui_snapshot_sha256"],
        evidence=row["evidence"],
        recorded_at=row["recorded_at"],
        valid_until=row["valid_until"],
        prev_hash=row["prev_hash"],
    )
    return {**body, "hash": row["hash"]}
