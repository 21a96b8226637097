"""breaches, breach_history: the register of personal data breaches (GDPR 33(5)) and the trail of every change to
it, which the database keeps append-only (server.breaches.register)."""

from tortoise import migrations
from tortoise.migrations import operations as ops
from orjson import loads
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from tortoise import fields
from tortoise.indexes import Index

from server.ledger import append_only


async def forward(apps, schema_editor) -> None:
    await append_only.install(schema_editor.client, "breach_history")


async def backward(apps, schema_editor) -> None:
    await append_only.uninstall(schema_editor.client, "breach_history")


class Migration(migrations.Migration):
    dependencies = [('models', '0011_recipients')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Breach',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('title', fields.CharField(max_length=200)),
                ('aware_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('occurred_from', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('occurred_until', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('kinds', fields.JSONField(default=list, encoder=JSON_DUMPS, decoder=loads)),
                ('description', fields.TextField(default='', unique=False)),
                ('data_categories', fields.TextField(default='', unique=False)),
                ('subject_categories', fields.TextField(default='', unique=False)),
                ('subjects_estimate', fields.IntField(null=True)),
                ('records_estimate', fields.IntField(null=True)),
                ('consequences', fields.TextField(default='', unique=False)),
                ('measures', fields.TextField(default='', unique=False)),
                ('risk', fields.CharField(default='unassessed', max_length=16)),
                ('authority_notified_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('authority_reference', fields.CharField(default='', max_length=128)),
                ('late_reason', fields.TextField(default='', unique=False)),
                ('subjects_informed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('no_communication_reason', fields.TextField(default='', unique=False)),
                ('closed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('recorded_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('recorded_by', fields.CharField(max_length=64)),
                ('version', fields.IntField(default=1)),
            ],
            options={'table': 'breaches', 'app': 'models', 'indexes': [Index(fields=['closed_at', 'aware_at'])], 'pk_attr': 'id', 'table_description': 'One personal data breach, its assessment and what was done about it (GDPR 33 and 34).'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='BreachEntry',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('breach', fields.ForeignKeyField('models.Breach', source_field='breach_id', db_constraint=True, to_field='id', related_name='entries', on_delete=OnDelete.RESTRICT)),
                ('at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('actor', fields.CharField(max_length=64)),
                ('action', fields.CharField(max_length=32)),
                ('changes', fields.JSONField(default=dict, encoder=JSON_DUMPS, decoder=loads)),
                ('note', fields.TextField(default='', unique=False)),
            ],
            options={'table': 'breach_history', 'app': 'models', 'indexes': [Index(fields=['breach_id', 'at'])], 'pk_attr': 'id', 'table_description': "One change to a breach: who, when, what (the fields' old and new values) and why."},
            bases=['Model'],
        ),
        ops.RunPython(forward, backward),
    ]
