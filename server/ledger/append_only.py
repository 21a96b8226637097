"""Database triggers that refuse UPDATE and DELETE on append-only tables: the ledger's events (invariant 1,
docs/design.md) and the breach register's trail (`breach_history`, GDPR 33(5)).

Installed by migrations 0002 (consent_events) and 0012 (breach_history). A SQLite table rebuild in a later
migration drops triggers with the old table, so `server.migrate` re-installs any that are missing after every
migration run.
"""

from __future__ import annotations

from typing import Any

TABLES = ("consent_events", "breach_history")


def postgres_up(table: str) -> list[str]:
    return [
        f"""CREATE OR REPLACE FUNCTION {table}_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '{table} is append-only (% refused)', TG_OP USING ERRCODE = 'integrity_constraint_violation';
END $$""",
        f"""CREATE TRIGGER {table}_no_update BEFORE UPDATE OR DELETE ON {table}
FOR EACH ROW EXECUTE FUNCTION {table}_append_only()""",
        f"""CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
FOR EACH STATEMENT EXECUTE FUNCTION {table}_append_only()""",
    ]


def postgres_down(table: str) -> list[str]:
    return [
        f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}",
        f"DROP TRIGGER IF EXISTS {table}_no_update ON {table}",
        f"DROP FUNCTION IF EXISTS {table}_append_only()",
    ]


def sqlite_triggers(table: str) -> dict[str, str]:
    return {
        f"{table}_no_update": f"""CREATE TRIGGER IF NOT EXISTS {table}_no_update
BEFORE UPDATE ON {table}
BEGIN SELECT RAISE(ABORT, '{table} is append-only (UPDATE refused)'); END""",
        f"{table}_no_delete": f"""CREATE TRIGGER IF NOT EXISTS {table}_no_delete
BEFORE DELETE ON {table}
BEGIN SELECT RAISE(ABORT, '{table} is append-only (DELETE refused)'); END""",
    }


def sqlite_down(table: str) -> list[str]:
    return [f"DROP TRIGGER IF EXISTS {name}" for name in sqlite_triggers(table)]


async def install(client: Any, table: str = "consent_events") -> None:
    if table not in TABLES:
        raise ValueError(f"{table} is not an append-only table")
    postgres = client.capabilities.dialect == "postgres"
    for statement in postgres_up(table) if postgres else list(sqlite_triggers(table).values()):
        await client.execute_query(statement)


async def uninstall(client: Any, table: str = "consent_events") -> None:
    postgres = client.capabilities.dialect == "postgres"
    for statement in postgres_down(table) if postgres else sqlite_down(table):
        await client.execute_query(statement)
