"""The projection write: the state of one subject x purpose x channel, as the latest event leaves it.

`Ledger.record` writes it in the transaction of each event (invariant 5, docs/design.md), and `ledger repair`
rewrites it from a replay of the ledger where it differs: both through `write_state`, so the two can never write
a state differently."""

from __future__ import annotations

from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from server.consent.decide import StateView
from server.models import ConsentState


async def write_state(
    conn: BaseDBAsyncClient, subject_id: Any, purpose: str, channel: str, view: StateView, row_id: Any | None
) -> Any:
    """Insert the state (`row_id` None) or overwrite the row `row_id`; returns the row's id."""
    values = {
        "status": view.status,
        "event_id": view.event_id,
        "policy_version_id": view.policy_version_id,
        "since": view.since,
        "valid_until": view.valid_until,
    }
    if row_id is None:
        row = await ConsentState.create(
            using_db=conn, subject_id=subject_id, purpose_id=purpose, channel_id=channel, **values
        )
        return row.id
    await ConsentState.filter(id=row_id).using_db(conn).update(**values)
    return row_id


async def delete_state(conn: BaseDBAsyncClient, row_id: Any) -> None:
    """Remove a state no event leads to (found by `ledger repair`)."""
    await ConsentState.filter(id=row_id).using_db(conn).delete()
