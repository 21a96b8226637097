"""Events as exported (the exact object that is hashed, plus `hash` and the log position)."""

from __future__ import annotations

from typing import Any

from server.ledger.chain import row_body
from server.policies.snapshot import CatalogSnapshot


def exported_event(row: dict[str, Any], pseudonym: str, catalog: CatalogSnapshot) -> dict[str, Any]:
    policy = catalog.policies_by_id[row["policy_version_id"]]
    reference = {"document": policy.document, "version": policy.version, "lang": policy.lang, "sha256": policy.sha256}
    return {**row_body(row, pseudonym, reference), "hash": row["hash"]}
