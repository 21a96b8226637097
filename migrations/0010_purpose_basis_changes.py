"""purpose_basis_changes: each change `policies sync` makes to a purpose's legal basis or channels, append-only.

The audience change feed reads it: such a change can flip every subject who never decided on the purpose. A table
of its own rather than a column on `purposes`, which every part of the service reads through the catalogue.
"""

from tortoise import migrations
from tortoise.migrations import operations as ops
from orjson import loads
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0009_change_feed')]

    initial = False

    operations = [
        ops.CreateModel(
            name='PurposeBasisChange',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('purpose', fields.ForeignKeyField('models.Purpose', source_field='purpose_id', db_constraint=True, to_field='code', related_name='basis_changes', on_delete=OnDelete.RESTRICT)),
                ('legal_basis', fields.CharField(max_length=32)),
                ('channel_basis', fields.JSONField(default=dict, encoder=JSON_DUMPS, decoder=loads)),
                ('channels', fields.JSONField(default=list, encoder=JSON_DUMPS, decoder=loads)),
                ('changed_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'purpose_basis_changes', 'app': 'models', 'indexes': [Index(fields=['purpose_id', 'changed_at'])], 'pk_attr': 'id', 'table_description': "A change `policies sync` made to an existing purpose's legal basis, per-channel basis or channels, with the"},
            bases=['Model'],
        ),
    ]
