"""The projection write: the state of one subject x purpose x channel, as the latest event leaves it.

`Ledger.record` writes it in the transaction of each call's events (invariant 5, docs/design.md), and `ledger
repair` rewrites it from a replay of the ledger where it differs: both build the row with `state_row` and write it
with the one upsert of `server.ledger.rows.states_sql`, so the two can never write a state differently."""

from __future__ import annotations

from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from server.consent.decide import StateView
from server.ledger.rows import Params, states_sql, write_all
from server.models import ConsentState


def state_row(subject_id: Any, purpose: str, channel: str, view: StateView) -> tuple[Any, ...]:
    """The values of `server.ledger.rows.STATE_COLUMNS` for `view`."""
    return (
        subject_id,
        purpose,
        channel,
        view.status,
        view.event_id,
        view.policy_version_id,
        view.since,
        view.valid_until,
    )


async def write_state(conn: BaseDBAsyncClient, subject_id: Any, purpose: str, channel: str, view: StateView) -> None:
    """Insert the state, or overwrite the subject's row for this purpose x channel."""
    params = Params(conn.capabilities.dialect == "postgres")
    await write_all(conn, [(states_sql(params, [state_row(subject_id, purpose, channel, view)]), params)])


async def delete_state(conn: BaseDBAsyncClient, row_id: Any) -> None:
    """Remove a state no event leads to (found by `ledger repair`)."""
    await ConsentState.filter(id=row_id).using_db(conn).delete()
