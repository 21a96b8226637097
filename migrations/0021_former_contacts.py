"""former_contacts: keyed hashes of the addresses and numbers a subject had before they were replaced, so that an
erasure suppresses every one of them (server.subjects.contact)."""

from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0020_log_identity')]

    initial = False

    operations = [
        ops.CreateModel(
            name='FormerContact',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('subject', fields.ForeignKeyField('models.Subject', source_field='subject_id', db_constraint=True, to_field='id', related_name='former_contacts', on_delete=OnDelete.RESTRICT)),
                ('kind', fields.CharField(max_length=8)),
                ('digest', fields.CharField(max_length=64)),
                ('replaced_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'former_contacts', 'app': 'models', 'unique_together': (('subject_id', 'digest'),), 'pk_attr': 'id', 'table_description': 'A keyed hash of an email address or phone number a subject had before it was replaced.'},
            bases=['Model'],
        ),
    ]
