"""The database itself refuses UPDATE and DELETE on ledger events (invariant 1 (docs/design.md))."""

from tortoise import migrations
from tortoise.migrations import operations as ops

from server.ledger import append_only


async def forward(apps, schema_editor) -> None:
    await append_only.install(schema_editor.client)


async def backward(apps, schema_editor) -> None:
    await append_only.uninstall(schema_editor.client)


class Migration(migrations.Migration):
    dependencies = [("models", "0001_initial")]

    operations = [ops.RunPython(forward, backward)]
