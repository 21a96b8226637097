"""PostgreSQL only: `subjects.check_states`, each subject's consent states beside its flags, kept by triggers, so that
a consent check reads one row, found through an index of refs compared as bytes (server.consent.read_model); and a
check that a state's instants are finite.

Filled here for every subject that has states. The whole migration is one transaction holding an exclusive lock on
`subjects` from its first statement: on a large ledger, checks and decisions wait for it to end (stop the server, or
plan the time), and `VACUUM (ANALYZE) subjects` afterwards reclaims the rows the backfill replaced. SQLite is
unchanged."""

from tortoise import migrations
from tortoise.migrations import operations as ops

from server.consent import read_model


async def forward(apps, schema_editor) -> None:
    await read_model.install(schema_editor.client)


async def backward(apps, schema_editor) -> None:
    await read_model.uninstall(schema_editor.client)


class Migration(migrations.Migration):
    dependencies = [("models", "0013_subject_indexes")]

    initial = False

    operations = [ops.RunPython(forward, backward)]
