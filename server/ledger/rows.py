"""The rows a record call writes, as raw SQL statements sent through the transaction's Tortoise connection.

`Ledger.record` writes every event of a call in one multi-row INSERT, every state in one upsert, the log queue's
rows and the receipt in one INSERT each; on PostgreSQL these four are one statement (data-modifying CTEs), so a call
costs the same round trips whatever its number of decisions. Through the ORM each row was a model instance, a
query built and a round trip of its own: ~45 % of the server's CPU a write (bench/README.md, "Writes (issue 24)").

Values are converted by the models' own fields (`to_db_value`), so a row written here is stored exactly as
`Model.create` stored it (a test compares the two). The statements are plain INSERTs: the append-only triggers,
the uniqueness of `(subject_id, seq)` and of `hash`, and the read model's triggers apply to them as to any write.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.models import Model

from server.db import is_postgres
from server.models import ConsentEvent, ConsentState, LogQueue, Receipt

EVENT_COLUMNS = (
    "id",
    "subject_id",
    "seq",
    "purpose_id",
    "channel_id",
    "action",
    "status",
    "policy_version_id",
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
)
STATE_COLUMNS = (
    "subject_id",
    "purpose_id",
    "channel_id",
    "status",
    "event_id",
    "policy_version_id",
    "since",
    "valid_until",
)
# What an existing state row takes from the new one (its key stays).
_STATE_UPDATES = ("status", "event_id", "policy_version_id", "since", "valid_until")
QUEUE_COLUMNS = ("event_id", "event_hash")
RECEIPT_COLUMNS = ("id", "subject_id", "event_ids", "jws", "created_at")


@functools.cache
def _fields(model: type[Model], columns: tuple[str, ...]) -> tuple[Any, ...]:
    """Each column's field (by its database name), whose `to_db_value` gives what the ORM would send. Looked up on
    first use: the models' metadata is complete only once Tortoise is initialised."""
    by_column = {column: model._meta.fields_map[name] for name, column in model._meta.fields_db_projection.items()}
    return tuple(by_column[column] for column in columns)


class Params:
    """The values of one statement and their markers: `$n` on PostgreSQL (numbered across the statement), `?` on
    SQLite."""

    def __init__(self, postgres: bool) -> None:
        self.postgres = postgres
        self.values: list[Any] = []

    def row(self, model: type[Model], columns: tuple[str, ...], values: Sequence[Any]) -> str:
        marks = []
        for field, value in zip(_fields(model, columns), values, strict=True):
            self.values.append(field.to_db_value(value, model))
            marks.append(f"${len(self.values)}" if self.postgres else "?")
        return f"({', '.join(marks)})"


def _insert(table: str, columns: Sequence[str], rows: Sequence[str]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join(rows)}"


def events_sql(params: Params, rows: Sequence[Sequence[Any]]) -> str:
    """One INSERT of `rows`, each the values of EVENT_COLUMNS."""
    return _insert("consent_events", EVENT_COLUMNS, [params.row(ConsentEvent, EVENT_COLUMNS, r) for r in rows])


def states_sql(params: Params, rows: Sequence[Sequence[Any]]) -> str:
    """One upsert of `rows` (values of STATE_COLUMNS, at most one a subject x purpose x channel): a new state is
    inserted, an existing one overwritten in place (its key is unique)."""
    updates = ", ".join(f"{column} = excluded.{column}" for column in _STATE_UPDATES)
    values = [params.row(ConsentState, STATE_COLUMNS, r) for r in rows]
    conflict = "ON CONFLICT (subject_id, purpose_id, channel_id) DO UPDATE SET"
    return f"{_insert('consent_states', STATE_COLUMNS, values)} {conflict} {updates}"


def queue_sql(params: Params, rows: Sequence[tuple[str, str]]) -> str:
    """One INSERT into the transparency log's queue: (event id, event hash) per event."""
    return _insert("log_queue", QUEUE_COLUMNS, [params.row(LogQueue, QUEUE_COLUMNS, r) for r in rows])


def receipt_sql(params: Params, receipt_id: str, subject_id: str, event_ids: list[str], jws: str, at: datetime) -> str:
    values = params.row(Receipt, RECEIPT_COLUMNS, (receipt_id, subject_id, event_ids, jws, at))
    return _insert("receipts", RECEIPT_COLUMNS, [values])


async def write_all(conn: BaseDBAsyncClient, parts: Sequence[tuple[str, Params]]) -> None:
    """Run statements built with their own Params (SQLite), or, on PostgreSQL, rebuild them as one statement.

    On PostgreSQL `parts` must have been built with ONE shared Params (see `statements`): the earlier parts become
    data-modifying CTEs of the last. The foreign keys between them (states and queue rows to their events) are
    checked at the end of the statement, when every row is in."""
    if not parts:
        return
    if is_postgres(conn):
        *ctes, (last, params) = parts
        head = ", ".join(f"w{index} AS ({sql})" for index, (sql, _) in enumerate(ctes))
        await conn.execute_query(f"WITH {head} {last}" if head else last, params.values)
        return
    for sql, params in parts:
        await conn.execute_query(sql, params.values)


class Statements:
    """Builds a call's writes, sharing one Params on PostgreSQL (one statement) and one each on SQLite."""

    def __init__(self, conn: BaseDBAsyncClient) -> None:
        self.postgres = is_postgres(conn)
        self.shared = Params(True) if self.postgres else None
        self.parts: list[tuple[str, Params]] = []

    def params(self) -> Params:
        return self.shared if self.shared is not None else Params(False)

    def add(self, sql: str, params: Params) -> None:
        self.parts.append((sql, params))
