"""PostgreSQL's read model for the consent check: each subject's states beside its flags, in the subject's own row.

A check needs the subject's flags (known, erased, restricted) and the state of one purpose x channel. Read from the
projection as it is, that is two index probes a key (`subjects` by ref, then `consent_states` by subject, purpose and
channel); one probe costs about 30 % less backend CPU a key (bench/README.md, "PostgreSQL read model: one probe a
check").
`subjects.check_states` holds, as one `jsonb` object, every state of the subject:

    {"<purpose>\\u001f<channel>": [status, since, valid_until, policy_version_id, event_id], ...}

so that one probe into `subjects` by ref (`REF_INDEX`) answers a check: flags and state from the same row version.
Instants are UTC text in the form SQLite stores them (`datetime.isoformat(" ")`: microseconds only when not zero),
which compares in time order as text; the bulk answers are then written by slicing, with no datetime made
(`server.consent.bulk`).

The column is kept by the database, whoever writes the states, with two triggers:
- when the ledger moves a subject's head (`last_seq`, written after the states in the same transaction), a BEFORE
  UPDATE trigger on `subjects` puts the recomputed object in that same new row version;
- a trigger on `consent_states`, deferred to the commit, compares the subject's object with a recomputation and
  writes it when they differ: a change of the states without a new head (an operator's repair, say).
The ledger's own transactions find it equal at commit and write no second row version, which a trigger writing on
every state change would add to each decision (bench/README.md, "PostgreSQL read model: one probe a check"). It is
NULL for a subject without states.
`python -m server ledger verify` compares every subject's object with a recomputation. Installed by migration 0014,
on PostgreSQL only: SQLite answers a check from its own two probes, which cost microseconds there, and does not have
the column.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

COLUMN = "check_states"
SEPARATOR = "\x1f"  # between purpose and channel in a key; a check's question never holds a control character
TRIGGER = "consent_states_check_states"
# The check finds the subject by ref through this index (migration 0015): a hash of the ref's bytes, one bucket page
# and one hash compared, where a B-tree descent compares ~17 refs through the collation's function calls (`perf` on
# the backends put `_bt_compare` first): backend CPU a key 3.9-5.1 us against 5.6-7.8 through a B-tree of the refs
# as bytes (bench/README.md, "PostgreSQL: the subject found by a hash index of refs"). The check's SQL compares refs
# `COLLATE "C"`, as the index is built, so that no other index matches it: equality is the same under any
# deterministic collation.
REF_INDEX = "subjects_ref_hash"
# Migration 0014's index for the same probe: a B-tree of the refs compared as bytes ("C"), not through the database's
# collation (strcoll, even for C.UTF-8 on PostgreSQL 15); replaced by REF_INDEX in 0015.
BYTES_INDEX = "subjects_ref_bytes"
TRUNCATE_TRIGGER = "consent_states_check_states_truncate"
# The read model writes instants as text, and an infinite one has none (consent_instant_text gives NULL): an infinite
# `valid_until` would read as "never expires". The ledger never writes one; the database refuses them from anyone.
FINITE_CONSTRAINT = "consent_states_finite_instants"

# The functions are created with CREATE OR REPLACE: a later migration may change them in place.
# One to_char, the fraction cut when it is zero (a '.' appears nowhere else): 0.9 us a call against 3.5 for a
# to_char of each part and a date_part (bench/README.md, "PostgreSQL read model: one probe a check").
INSTANT_FUNCTION = """CREATE OR REPLACE FUNCTION consent_instant_text(t timestamptz) RETURNS text
LANGUAGE sql STABLE STRICT PARALLEL SAFE AS $$
  SELECT replace(to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), '.000000', '') || '+00:00'
$$"""

# PL/pgSQL, not SQL: a SQL function called from a trigger is planned again at every call (~1 ms a decision,
# bench/README.md, "PostgreSQL read model: one probe a check"),
# where PL/pgSQL keeps its query's plan for the session.
STATES_FUNCTION = """CREATE OR REPLACE FUNCTION consent_check_states(subject uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
BEGIN
  RETURN (
    SELECT jsonb_object_agg(
             purpose_id || E'\\x1f' || channel_id,
             jsonb_build_array(status, consent_instant_text(since), consent_instant_text(valid_until),
                               policy_version_id, event_id::text))
    FROM consent_states WHERE subject_id = subject);
END $$"""

# Run at commit, once for each state row changed. The subject's row is locked first, in a statement of its own, and
# the object recomputed in the next, under a snapshot taken once the lock is held: a writer of this subject's states
# that committed meanwhile is seen, and one still to commit waits for the lock in its own commit-time run, then
# recomputes with this one's states (the ledger locks the subject before it writes a state, so this waits for nothing
# there). Under REPEATABLE READ the lock raises a serialization failure instead: the transaction fails, nothing stale
# is written.
TRIGGER_FUNCTION = f"""CREATE OR REPLACE FUNCTION consent_states_to_subject() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  target uuid;
BEGIN
  FOR target IN
    SELECT DISTINCT changed FROM unnest(ARRAY[
      CASE WHEN TG_OP <> 'INSERT' THEN OLD.subject_id END,
      CASE WHEN TG_OP <> 'DELETE' THEN NEW.subject_id END]) AS changed
    WHERE changed IS NOT NULL
  LOOP
    PERFORM 1 FROM subjects WHERE id = target FOR UPDATE;
    UPDATE subjects SET {COLUMN} = consent_check_states(target)
    WHERE id = target AND {COLUMN} IS DISTINCT FROM consent_check_states(target);
  END LOOP;
  RETURN NULL;
END $$"""

CREATE_TRIGGER = f"""CREATE CONSTRAINT TRIGGER {TRIGGER} AFTER INSERT OR UPDATE OR DELETE ON consent_states
DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION consent_states_to_subject()"""


HEAD_TRIGGER = "subjects_check_states_with_head"
HEAD_FUNCTION = f"""CREATE OR REPLACE FUNCTION subjects_check_states_with_head() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  NEW.{COLUMN} := consent_check_states(NEW.id);
  RETURN NEW;
END $$"""
CREATE_HEAD_TRIGGER = f"""CREATE TRIGGER {HEAD_TRIGGER} BEFORE UPDATE OF last_seq ON subjects
FOR EACH ROW WHEN (OLD.last_seq IS DISTINCT FROM NEW.last_seq) EXECUTE FUNCTION subjects_check_states_with_head()"""

TRUNCATE_FUNCTION = f"""CREATE OR REPLACE FUNCTION consent_states_truncated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  UPDATE subjects SET {COLUMN} = NULL WHERE {COLUMN} IS NOT NULL;
  RETURN NULL;
END $$"""

CREATE_TRUNCATE_TRIGGER = f"""CREATE TRIGGER {TRUNCATE_TRIGGER} AFTER TRUNCATE ON consent_states
FOR EACH STATEMENT EXECUTE FUNCTION consent_states_truncated()"""

# Every subject's object recomputed in one statement: the migration's backfill, under the exclusive lock its ALTER
# TABLE holds to the end. Not a repair to run on a live database: a subject changed while it runs would get the
# states read at its start (`REPAIR` below is the live one, a subject at a time).
REBUILD = f"""UPDATE subjects s SET {COLUMN} = x.states
FROM (SELECT id, consent_check_states(id) AS states FROM subjects) x
WHERE x.id = s.id AND s.{COLUMN} IS DISTINCT FROM x.states"""

# One subject's object recomputed, where it differs (`python -m server ledger repair`): live-safe when the subject's
# row was locked by an earlier statement of the same transaction, as the trigger does, so that this statement's
# snapshot sees every state committed before the lock came free and the writers after it wait.
REPAIR = f"""UPDATE subjects SET {COLUMN} = consent_check_states(id)
WHERE id = $1::uuid AND {COLUMN} IS DISTINCT FROM consent_check_states(id)"""

# The refs, among `$1` (subject ids), whose object differs from a recomputation.
MISMATCHES = f"""SELECT ref FROM subjects
WHERE id = ANY($1::uuid[]) AND {COLUMN} IS DISTINCT FROM consent_check_states(id)"""


def up() -> list[str]:
    return [
        f"ALTER TABLE subjects ADD COLUMN IF NOT EXISTS {COLUMN} jsonb",
        f'CREATE INDEX IF NOT EXISTS {BYTES_INDEX} ON subjects (ref COLLATE "C")',
        f"ALTER TABLE consent_states DROP CONSTRAINT IF EXISTS {FINITE_CONSTRAINT}",
        f"ALTER TABLE consent_states ADD CONSTRAINT {FINITE_CONSTRAINT} "
        "CHECK (isfinite(since) AND (valid_until IS NULL OR isfinite(valid_until)))",
        INSTANT_FUNCTION,
        STATES_FUNCTION,
        TRIGGER_FUNCTION,
        f"DROP TRIGGER IF EXISTS {TRIGGER} ON consent_states",
        CREATE_TRIGGER,
        HEAD_FUNCTION,
        f"DROP TRIGGER IF EXISTS {HEAD_TRIGGER} ON subjects",
        CREATE_HEAD_TRIGGER,
        TRUNCATE_FUNCTION,
        f"DROP TRIGGER IF EXISTS {TRUNCATE_TRIGGER} ON consent_states",
        CREATE_TRUNCATE_TRIGGER,
        REBUILD,
    ]


def down() -> list[str]:
    return [
        f"DROP TRIGGER IF EXISTS {TRUNCATE_TRIGGER} ON consent_states",
        f"DROP TRIGGER IF EXISTS {TRIGGER} ON consent_states",
        f"DROP TRIGGER IF EXISTS {HEAD_TRIGGER} ON subjects",
        "DROP FUNCTION IF EXISTS subjects_check_states_with_head()",
        "DROP FUNCTION IF EXISTS consent_states_truncated()",
        "DROP FUNCTION IF EXISTS consent_states_to_subject()",
        "DROP FUNCTION IF EXISTS consent_check_states(uuid)",
        "DROP FUNCTION IF EXISTS consent_instant_text(timestamptz)",
        f"ALTER TABLE subjects DROP COLUMN IF EXISTS {COLUMN}",
        f"DROP INDEX IF EXISTS {BYTES_INDEX}",
        f"ALTER TABLE consent_states DROP CONSTRAINT IF EXISTS {FINITE_CONSTRAINT}",
    ]


def hash_index_up() -> list[str]:
    """Migration 0015: the hash index built first (checks go on through the B-tree meanwhile), then the B-tree
    dropped."""
    return [
        f'CREATE INDEX IF NOT EXISTS {REF_INDEX} ON subjects USING hash ((ref COLLATE "C"))',
        f"DROP INDEX IF EXISTS {BYTES_INDEX}",
    ]


def hash_index_down() -> list[str]:
    return [
        f'CREATE INDEX IF NOT EXISTS {BYTES_INDEX} ON subjects (ref COLLATE "C")',
        f"DROP INDEX IF EXISTS {REF_INDEX}",
    ]


async def on_postgres(client: Any, statements: list[str]) -> None:
    """Run a migration's statements (PostgreSQL; nothing on SQLite, which has no read model)."""
    if client.capabilities.dialect != "postgres":
        return
    for statement in statements:
        await client.execute_script(statement)


async def install(client: Any) -> None:
    """Add the column, its trigger, and fill it (migration 0014)."""
    await on_postgres(client, up())


async def uninstall(client: Any) -> None:
    await on_postgres(client, down())


def instant_text(value: datetime | None) -> str | None:
    """An instant in the text form the checks compare: UTC, `isoformat(" ")` (what SQLite stores, what
    `consent_instant_text` writes into the read model)."""
    return None if value is None else value.astimezone(UTC).isoformat(" ")


def key(purpose: str, channel: str) -> str:
    """The key of a purpose x channel in the object."""
    return f"{purpose}{SEPARATOR}{channel}"
