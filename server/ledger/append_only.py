"""Database triggers that refuse UPDATE and DELETE on ledger events (DESIGN invariant 1).

Installed by migration 0002. A SQLite table rebuild in a later migration drops triggers with the old table, so
`server.migrate` re-installs any that are missing after every migration run.
"""

from __future__ import annotations

from typing import Any

POSTGRES_UP = [
    """CREATE OR REPLACE FUNCTION consent_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'consent_events is append-only (% refused)', TG_OP USING ERRCODE = 'integrity_constraint_violation';
END $$""",
    """CREATE TRIGGER consent_events_no_update BEFORE UPDATE OR DELETE ON consent_events
FOR EACH ROW EXECUTE FUNCTION consent_events_append_only()""",
    """CREATE TRIGGER consent_events_no_truncate BEFORE TRUNCATE ON consent_events
FOR EACH STATEMENT EXECUTE FUNCTION consent_events_append_only()""",
]
POSTGRES_DOWN = [
    "DROP TRIGGER IF EXISTS consent_events_no_truncate ON consent_events",
    "DROP TRIGGER IF EXISTS consent_events_no_update ON consent_events",
    "DROP FUNCTION IF EXISTS consent_events_append_only()",
]
SQLITE_TRIGGERS = {
    "consent_events_no_update": """CREATE TRIGGER IF NOT EXISTS consent_events_no_update
BEFORE UPDATE ON consent_events
BEGIN SELECT RAISE(ABORT, 'consent_events is append-only (UPDATE refused)'); END""",
    "consent_events_no_delete": """CREATE TRIGGER IF NOT EXISTS consent_events_no_delete
BEFORE DELETE ON consent_events
BEGIN SELECT RAISE(ABORT, 'consent_events is append-only (DELETE refused)'); END""",
}
SQLITE_DOWN = [f"DROP TRIGGER IF EXISTS {name}" for name in SQLITE_TRIGGERS]


async def install(client: Any) -> None:
    statements = POSTGRES_UP if client.capabilities.dialect == "postgres" else list(SQLITE_TRIGGERS.values())
    for statement in statements:
        await client.execute_query(statement)


async def uninstall(client: Any) -> None:
    statements = POSTGRES_DOWN if client.capabilities.dialect == "postgres" else SQLITE_DOWN
    for statement in statements:
        await client.execute_query(statement)
