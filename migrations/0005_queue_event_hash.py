"""log_queue.event_hash: the event's hash copied into the queue, so the sequencer needs no join.

Added as nullable, filled for rows already queued (raw SQL that SQLite and PostgreSQL both accept), then made NOT
NULL (on SQLite that rebuilds log_queue: `server.migrate` runs it with foreign keys off and checks them after).
"""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops

BACKFILL = (
    "UPDATE log_queue SET event_hash = (SELECT e.hash FROM consent_events e WHERE e.id = log_queue.event_id) "
    "WHERE event_hash IS NULL"
)


class Migration(migrations.Migration):
    dependencies = [("models", "0004_service_desk")]

    initial = False

    operations = [
        ops.AddField(
            model_name="LogQueue",
            name="event_hash",
            field=fields.CharField(null=True, max_length=64),
        ),
        ops.RunSQL(BACKFILL, reverse_sql=ops.RunSQL.noop),
        ops.AlterField(
            model_name="LogQueue",
            name="event_hash",
            field=fields.CharField(max_length=64),
        ),
    ]
