"""Deriving state from the ledger itself: the point-in-time matrix (`?at=`) and the check of the projection."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from server.consent.decide import StateView


def replay(events: Iterable[dict[str, Any]], at: datetime | None = None) -> dict[tuple[str, str], StateView]:
    """Fold events (in `seq` order) into the latest state per purpose x channel, ignoring those after `at`."""
    states: dict[tuple[str, str], StateView] = {}
    for event in events:
        if at is not None and event["recorded_at"] > at:
            continue
        states[(event["purpose_id"], event["channel_id"])] = StateView(
            status=event["status"],
            since=event["recorded_at"],
            valid_until=event["valid_until"],
            policy_version_id=event["policy_version_id"],
            event_id=str(event["id"]),
        )
    return states
