"""PostgreSQL only: `subjects.check_states`, each subject's consent states beside its flags, kept by a trigger on
`consent_states`, so that a consent check reads one row, found through an index of refs compared as bytes
(server.consent.read_model). Filled for every subject here: a large ledger rewrites every subject row once. SQLite is
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
