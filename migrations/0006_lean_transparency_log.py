"""A leaner transparency log, so a first checkpoint over a large ledger writes less.

- `log_entries`: `position` becomes the primary key (the surrogate `id` and its index go), and `event_id` keeps its
  unique index but loses its foreign-key constraint (it is copied from `log_queue`, checked there when the event
  was recorded; events are never deleted).
- `log_queue.event_id`: no unique index (the costliest index to delete a million random UUIDs from).
- `merkle_nodes`: levels 1-3 are no longer stored (the log hashes them from their leaves when a proof needs them).

Tortoise's autodetector sees only part of this (it keeps `position` UNIQUE beside no primary key and never drops a
foreign-key constraint), so the model state is declared with `StateOnly` operations and the tables are changed
here, per dialect, with their rows kept. On SQLite both tables are rebuilt (migrations run with foreign keys off).
"""

from typing import Any

from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.migrations import operations as ops

from server.db import placeholders
from server.migrate import StateOnly, constraint_names
from server.proof import merkle

SQLITE_FORWARD = """
CREATE TABLE "log_entries_0006" (
    "position" INTEGER PRIMARY KEY NOT NULL,
    "event_id" CHAR(36) NOT NULL,
    "leaf_hash" VARCHAR(64) NOT NULL
);
INSERT INTO "log_entries_0006" ("position", "event_id", "leaf_hash")
    SELECT "position", "event_id", "leaf_hash" FROM "log_entries" ORDER BY "position";
DROP TABLE "log_entries";
ALTER TABLE "log_entries_0006" RENAME TO "log_entries";
CREATE UNIQUE INDEX "uniq_log_entries_event_id" ON "log_entries" ("event_id");
CREATE TABLE "log_queue_0006" (
    "id" INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    "event_id" CHAR(36) NOT NULL REFERENCES "consent_events" ("id") ON DELETE RESTRICT,
    "event_hash" VARCHAR(64) NOT NULL
);
INSERT INTO "log_queue_0006" ("id", "event_id", "event_hash") SELECT "id", "event_id", "event_hash" FROM "log_queue";
DROP TABLE "log_queue";
ALTER TABLE "log_queue_0006" RENAME TO "log_queue";
DELETE FROM "merkle_nodes" WHERE "level" BETWEEN 1 AND 3;
"""

SQLITE_BACKWARD = """
CREATE TABLE "log_entries_0005" (
    "id" INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    "position" BIGINT NOT NULL UNIQUE,
    "leaf_hash" VARCHAR(64) NOT NULL,
    "event_id" CHAR(36) NOT NULL UNIQUE REFERENCES "consent_events" ("id") ON DELETE RESTRICT
);
INSERT INTO "log_entries_0005" ("position", "event_id", "leaf_hash")
    SELECT "position", "event_id", "leaf_hash" FROM "log_entries" ORDER BY "position";
DROP TABLE "log_entries";
ALTER TABLE "log_entries_0005" RENAME TO "log_entries";
CREATE UNIQUE INDEX "uniq_log_queue_event_id" ON "log_queue" ("event_id");
"""


async def forward(apps: Any, editor: Any) -> None:
    client = editor.client
    if client.capabilities.dialect != "postgres":
        await client.execute_script(SQLITE_FORWARD)
        return
    statements = [
        f'ALTER TABLE log_entries DROP CONSTRAINT "{name}"'
        for name in await constraint_names(client, "log_entries", "f", "event_id")
        + await constraint_names(client, "log_entries", "u", "position")
        + await constraint_names(client, "log_entries", "p", "id")
    ]
    statements += [
        f'ALTER TABLE log_queue DROP CONSTRAINT "{name}"'
        for name in await constraint_names(client, "log_queue", "u", "event_id")
    ]
    statements += [
        "ALTER TABLE log_entries DROP COLUMN id",
        "ALTER TABLE log_entries ADD CONSTRAINT log_entries_pkey PRIMARY KEY (position)",
        "DELETE FROM merkle_nodes WHERE level BETWEEN 1 AND 3",
    ]
    for sql in statements:
        await client.execute_script(sql)


async def backward(apps: Any, editor: Any) -> None:
    """Back to the 0005 tables, with Merkle levels 1-3 hashed again from the leaves (0005 code reads them stored)."""
    client = editor.client
    await _store_low_levels(client)
    if client.capabilities.dialect != "postgres":
        await client.execute_script(SQLITE_BACKWARD)
        return
    for sql in (
        "ALTER TABLE log_entries DROP CONSTRAINT log_entries_pkey",
        "ALTER TABLE log_entries ADD COLUMN id BIGSERIAL PRIMARY KEY",
        "ALTER TABLE log_entries ADD CONSTRAINT log_entries_position_key UNIQUE (position)",
        "ALTER TABLE log_entries ADD CONSTRAINT log_entries_event_id_fkey FOREIGN KEY (event_id) "
        "REFERENCES consent_events (id) ON DELETE RESTRICT",
        "ALTER TABLE log_queue ADD CONSTRAINT log_queue_event_id_key UNIQUE (event_id)",
    ):
        await client.execute_script(sql)


async def _store_low_levels(client: Any) -> None:
    _, rows = await client.execute_query("SELECT leaf_hash FROM log_entries ORDER BY position")
    current = [bytes.fromhex(row["leaf_hash"]) for row in rows]
    nodes: list[list[Any]] = []
    for level in (1, 2, 3):
        current = [merkle.node_hash(current[i], current[i + 1]) for i in range(0, len(current) - 1, 2)]
        nodes += [[level, index, value.hex()] for index, value in enumerate(current)]
    if nodes:
        marks = ", ".join(placeholders(client, 3))
        await client.execute_many(f'INSERT INTO merkle_nodes (level, "index", hash) VALUES ({marks})', nodes)


class Migration(migrations.Migration):
    dependencies = [("models", "0005_queue_event_hash")]

    initial = False

    operations = [
        StateOnly(
            ops.AlterModelOptions(
                name="LogEntry",
                options={
                    "table": "log_entries",
                    "app": "models",
                    "pk_attr": "position",
                    "table_description": "A leaf of the transparency log: position -> event, with the RFC 6962 "
                    "leaf hash of the event hash.",
                },
            )
        ),
        StateOnly(ops.RemoveField(model_name="LogEntry", name="id")),
        StateOnly(
            ops.AlterField(
                model_name="LogEntry",
                name="position",
                field=fields.BigIntField(primary_key=True, generated=False),
            )
        ),
        StateOnly(
            ops.AlterField(
                model_name="LogEntry",
                name="event",
                field=fields.OneToOneField(
                    "models.ConsentEvent",
                    source_field="event_id",
                    db_constraint=False,
                    to_field="id",
                    related_name="log_entry",
                    on_delete=OnDelete.RESTRICT,
                ),
            )
        ),
        StateOnly(
            ops.AlterField(
                model_name="LogQueue",
                name="event",
                field=fields.ForeignKeyField(
                    "models.ConsentEvent",
                    source_field="event_id",
                    db_constraint=True,
                    to_field="id",
                    related_name="queued",
                    on_delete=OnDelete.RESTRICT,
                ),
            )
        ),
        ops.RunPython(forward, backward),
    ]
