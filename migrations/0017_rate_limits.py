"""Shared rate-limit counters (`server.limits`; UNLOGGED on PostgreSQL) and the banner's acknowledged choices
(`server.banner.choices`: a choice sent again with its choice id is answered from here, and writes nothing)."""

from tortoise import migrations
from tortoise.migrations import operations as ops

from server.banner.choices import table_sql as choices_sql
from server.limits.stores import table_sql as limits_sql


async def forward(apps, schema_editor) -> None:
    postgres = schema_editor.client.capabilities.dialect == "postgres"
    for statement in [*limits_sql(postgres), *choices_sql()]:
        await schema_editor.client.execute_script(statement)


async def backward(apps, schema_editor) -> None:
    await schema_editor.client.execute_script("DROP TABLE IF EXISTS rate_limits")
    await schema_editor.client.execute_script("DROP TABLE IF EXISTS banner_choices")


class Migration(migrations.Migration):
    dependencies = [("models", "0016_leases")]

    initial = False

    operations = [ops.RunPython(forward, backward)]
