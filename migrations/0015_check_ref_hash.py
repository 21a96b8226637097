"""PostgreSQL only: the consent check finds a subject by ref through a hash index instead of 0014's B-tree of refs as
bytes (server.consent.read_model.REF_INDEX says why: ~30 % less backend CPU a check).

The hash index is built before the B-tree is dropped, so checks keep an index throughout. The build takes a SHARE lock
on `subjects` (decisions wait for it, checks do not), the drop an exclusive one held until the migration commits just
after. SQLite is unchanged."""

from tortoise import migrations
from tortoise.migrations import operations as ops

from server.consent import read_model


async def forward(apps, schema_editor) -> None:
    await read_model.on_postgres(schema_editor.client, read_model.hash_index_up())


async def backward(apps, schema_editor) -> None:
    await read_model.on_postgres(schema_editor.client, read_model.hash_index_down())


class Migration(migrations.Migration):
    dependencies = [("models", "0014_check_read_model")]

    initial = False

    operations = [ops.RunPython(forward, backward)]
