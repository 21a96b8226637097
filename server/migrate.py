"""Applying and generating Tortoise native migrations (`migrations/`), with the SQLite safety rails.

SQLite rebuilds a table (create new, copy, drop old, rename) for most column changes. Two hazards follow, both
handled here: with `foreign_keys=ON` dropping the old parent table cascades into child rows, so migrations run
with foreign keys off and `PRAGMA foreign_key_check` must come back empty afterwards; and a rebuild drops indexes
the model declares (and the append-only triggers), so they are re-created if missing.
"""

from __future__ import annotations

from typing import Any

from tortoise import Tortoise, connections
from tortoise.apps import Apps
from tortoise.context import TortoiseContext
from tortoise.migrations.api import migrate as migrate_api
from tortoise.migrations.autodetector import MigrationAutodetector
from tortoise.migrations.operations import TortoiseOperation
from tortoise.migrations.schema_editor.base import BaseSchemaEditor
from tortoise.migrations.schema_generator.state import State

from server.db import APP_LABEL, is_postgres, tortoise_config
from server.ledger import append_only


class MigrationError(RuntimeError):
    """Applying migrations left the database inconsistent."""


async def apply_migrations(database_url: str, *, target: str | None = None, quiet: bool = True) -> None:
    """Bring the database at `database_url` to the latest migration (or `target`, `app.name`)."""
    config = tortoise_config(database_url, migrating=True)
    async with TortoiseContext() as ctx:
        await ctx.init(config=config)
        await migrate_api(config=config, target=target, progress=None if quiet else _print_progress)
        conn = connections.get("default")
        if not is_postgres(conn):
            # The models describe the latest migration only: an earlier target gets back only the unique indexes a
            # rebuild dropped, not the others (they could be ones a later migration creates, under the same name).
            await _check_sqlite(conn, at_latest=target is None)


async def pending_changes(database_url: str) -> list[str]:
    """Operations `makemigrations` would write now (empty when migrations match the models)."""
    config = tortoise_config(database_url)
    async with TortoiseContext() as ctx:
        await ctx.init(config=config)
        writers = await MigrationAutodetector(_apps(ctx), config["apps"]).changes()
        return [repr(op) for writer in writers for op in writer.operations]


async def make_migrations(database_url: str, name: str | None = None) -> list[str]:
    """Write a new migration file for model changes; returns the paths written."""
    config = tortoise_config(database_url)
    async with TortoiseContext() as ctx:
        await ctx.init(config=config)
        writers = await MigrationAutodetector(_apps(ctx), config["apps"]).changes()
        paths = []
        for writer in writers:
            if name:
                number = writer.name.split("_", 1)[0]
                writer.name = f"{number}_{name}"
            paths.append(str(writer.write()))
        return paths


class StateOnly(TortoiseOperation):
    """An operation's effect on the migration state only: for schema changes the autodetector describes but cannot
    apply faithfully, which the migration then makes itself (with `RunPython`)."""

    def __init__(self, operation: TortoiseOperation) -> None:
        self.operation = operation

    def describe(self) -> str:
        return f"{self.operation.describe()} (state only)"

    def state_forward(self, app_label: str, state: State) -> None:
        self.operation.state_forward(app_label, state)

    async def database_forward(
        self, app_label: str, old_state: State, new_state: State, state_editor: BaseSchemaEditor | None = None
    ) -> None:
        return None

    async def database_backward(
        self, app_label: str, old_state: State, new_state: State, state_editor: BaseSchemaEditor | None = None
    ) -> None:
        return None


async def constraint_names(client: Any, table: str, kind: str, column: str) -> list[str]:
    """PostgreSQL: names of the constraints of `kind` ('p', 'u', 'f') on exactly `column` of `table`."""
    rows = await client.execute_query_dict(
        "SELECT c.conname AS name FROM pg_constraint c JOIN pg_attribute a "
        "ON a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey) "
        "WHERE c.conrelid = to_regclass($1) AND c.contype::text = $2 AND a.attname = $3 AND cardinality(c.conkey) = 1",
        [table, kind, column],
    )
    return [str(row["name"]) for row in rows]


def _apps(ctx: TortoiseContext) -> Apps:
    if ctx.apps is None:
        raise MigrationError("Tortoise apps are not initialised")
    return ctx.apps


async def _check_sqlite(conn: Any, *, at_latest: bool) -> None:
    broken = await conn.execute_query_dict("PRAGMA foreign_key_check")
    if broken:
        raise MigrationError(f"foreign key check failed after migrating: {broken[:5]}")
    await _restore_declared_indexes(conn, at_latest=at_latest)
    for table in append_only.TABLES:
        if await _table_exists(conn, table):
            await append_only.install(conn, table)  # idempotent (IF NOT EXISTS): a table rebuild drops its triggers


async def _table_exists(conn: Any, table: str) -> bool:
    rows = await conn.execute_query_dict("SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?", [table])
    return bool(rows)


async def _restore_declared_indexes(conn: Any, *, at_latest: bool) -> None:
    """Re-create indexes declared on the models that a SQLite table rebuild dropped: unique ones always, the others
    only `at_latest`, a named one under its name (the SQLite readers use them: INDEXED BY), also where an index of
    the same columns has another name. An index on a column the table does not have is skipped: SQLite would index
    the quoted name as a string."""
    apps = Tortoise.apps
    models = apps[APP_LABEL].values() if apps is not None and APP_LABEL in apps else []
    for model in models:
        meta = model._meta
        table = meta.db_table
        present = {row["name"] for row in await conn.execute_query_dict(f'PRAGMA table_info("{table}")')}
        existing = await conn.execute_query_dict(f'PRAGMA index_list("{table}")')
        existing_names = {row["name"] for row in existing}
        covered = set()
        covered_unique: dict[tuple[str, ...], bool] = {}
        for row in existing:
            cols = await conn.execute_query_dict(f'PRAGMA index_info("{row["name"]}")')
            key = tuple(c["name"] for c in cols)
            covered.add(key)
            covered_unique[key] = covered_unique.get(key, False) or bool(row["unique"])
        wanted: list[tuple[tuple[str, ...], str | None]] = []
        for index in meta.indexes:
            names = index if isinstance(index, tuple) else tuple(getattr(index, "fields", ()) or ())
            if names:
                wanted.append((tuple(_column(meta, f) for f in names), getattr(index, "name", None)))
        for field_name, field in meta.fields_map.items():
            if getattr(field, "index", False) and not field.pk:
                wanted.append(((_column(meta, field_name),), None))
        unique = {tuple(_column(meta, f) for f in together) for together in meta.unique_together}
        # Single-column UNIQUE too: a rebuild writes a one-to-one key (log_queue.event_id) without it.
        unique |= {
            (str(column),)
            for name, column in meta.fields_db_projection.items()
            if getattr(meta.fields_map[name], "unique", False) and not meta.fields_map[name].pk
        }
        unique_covered = {cols for cols, is_unique in covered_unique.items() if is_unique}
        for columns in unique:
            if columns not in unique_covered and present.issuperset(columns):
                # A lost UNIQUE(subject_id, seq) would let the chain fork: restore it as a unique index.
                await _create_index(conn, table, columns, unique=True)
        for columns, name in wanted if at_latest else []:
            missing = name not in existing_names if name else columns not in covered
            if missing and present.issuperset(columns):
                await _create_index(conn, table, columns, unique=False, name=name)


async def _create_index(
    conn: Any, table: str, columns: tuple[str, ...], *, unique: bool, name: str | None = None
) -> None:
    kind = "uniq" if unique else "idx"
    name = name or f"{kind}_{table}_{'_'.join(columns)}"[:60]
    cols_sql = ", ".join(f'"{c}"' for c in columns)
    statement = "CREATE UNIQUE INDEX" if unique else "CREATE INDEX"
    await conn.execute_script(f'{statement} IF NOT EXISTS "{name}" ON "{table}" ({cols_sql})')


def _column(meta: Any, field_name: str) -> str:
    field = meta.fields_map[field_name]
    if field_name in meta.fk_fields:
        return str(field.source_field or f"{field_name}_id")
    return str(field.source_field or field_name)


def _print_progress(event: str, app_label: str, name: str) -> None:
    if event == "apply_done":
        print(f"applied {app_label}.{name}")
