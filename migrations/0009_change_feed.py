"""The audience change feed reads only what changed: indexes by instant, and when a subject's flags last changed.

`subjects.flags_changed_at` records when `erased_at` or `restricted_at` last changed. Lifting a restriction leaves
`restricted_at` empty and no other trace on the subject, so the feed could not see it before; for subjects changed
before this migration it is filled from the flags themselves and from the desk's `restriction_lifted` steps, the
latest of these. Four indexes let a poll read the states of a pair decided after its cursor (`since`), those that
expired since (`valid_until`), and the subjects flagged or created after it, instead of every subject. Named, because
the SQLite reader names them (INDEXED BY). Raw SQL that SQLite and PostgreSQL both accept (timestamps of one offset
compare in time order as SQLite's text).

The column is added and dropped with plain `ALTER TABLE` (`StateOnly` declares it to the migration state): Tortoise
would rebuild the SQLite table to drop it, and a rebuild loses the subjects' named indexes that an earlier migration
going back still has to drop.
"""

from tortoise import fields, migrations
from tortoise.indexes import Index
from tortoise.migrations import operations as ops

from server.db import is_postgres
from server.migrate import StateOnly

_LIFTED = (
    "SELECT max(h.at) FROM dsr_history h JOIN dsr_requests r ON r.id = h.request_id "
    "WHERE r.subject_id = subjects.id AND h.action = 'restriction_lifted'"
)
BACKFILL = [
    "UPDATE subjects SET flags_changed_at = erased_at WHERE erased_at IS NOT NULL",
    "UPDATE subjects SET flags_changed_at = restricted_at WHERE restricted_at IS NOT NULL "
    "AND (flags_changed_at IS NULL OR restricted_at > flags_changed_at)",
    # Only subjects with a restriction request: the subquery is not run for every subject.
    f"UPDATE subjects SET flags_changed_at = ({_LIFTED}) "
    "WHERE id IN (SELECT subject_id FROM dsr_requests WHERE kind = 'restriction') "
    f"AND ({_LIFTED}) IS NOT NULL AND (flags_changed_at IS NULL OR ({_LIFTED}) > flags_changed_at)",
]


async def add_column(apps, schema_editor) -> None:
    client = schema_editor.client
    kind = "TIMESTAMPTZ" if is_postgres(client) else "TIMESTAMP"
    await client.execute_script(f"ALTER TABLE subjects ADD COLUMN flags_changed_at {kind}")


async def drop_column(apps, schema_editor) -> None:
    await schema_editor.client.execute_script("ALTER TABLE subjects DROP COLUMN flags_changed_at")


class Migration(migrations.Migration):
    dependencies = [("models", "0008_audience_covering_indexes")]

    initial = False

    operations = [
        StateOnly(ops.AddField(model_name="Subject", name="flags_changed_at", field=fields.DatetimeField(null=True))),
        ops.RunPython(add_column, drop_column),
        *(ops.RunSQL(sql, reverse_sql=ops.RunSQL.noop) for sql in BACKFILL),
        ops.AddIndex(model_name="Subject", index=Index(fields=["flags_changed_at"], name="subjects_flags_changed")),
        ops.AddIndex(model_name="Subject", index=Index(fields=["created_at"], name="subjects_created")),
        ops.AddIndex(
            model_name="ConsentState",
            index=Index(fields=["purpose_id", "channel_id", "since"], name="consent_states_changed"),
        ),
        ops.AddIndex(
            model_name="ConsentState",
            index=Index(fields=["purpose_id", "channel_id", "valid_until"], name="consent_states_expiring"),
        ),
    ]
