"""recipients, recipient_notices: GDPR 19, the systems told of withdrawals, objections, erasures, restrictions and
rectifications, and each notice with its delivery and acknowledgement (server.recipients)."""

from tortoise import migrations
from tortoise.migrations import operations as ops
from orjson import loads
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from uuid import uuid4
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0010_purpose_basis_changes')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Recipient',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('name', fields.CharField(unique=True, max_length=128)),
                ('url', fields.CharField(max_length=2048)),
                ('purposes', fields.JSONField(default=list, encoder=JSON_DUMPS, decoder=loads)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('disabled_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('unavailable_until', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'recipients', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A system that receives consent data and must be told of changes to it (GDPR 19).'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='RecipientNotice',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('recipient', fields.ForeignKeyField('models.Recipient', source_field='recipient_id', db_constraint=True, to_field='id', related_name='notices', on_delete=OnDelete.RESTRICT)),
                ('subject', fields.ForeignKeyField('models.Subject', source_field='subject_id', db_constraint=True, to_field='id', related_name='recipient_notices', on_delete=OnDelete.RESTRICT)),
                ('kind', fields.CharField(max_length=32)),
                ('event_id', fields.UUIDField(null=True)),
                ('purpose_id', fields.CharField(null=True, max_length=64)),
                ('channel_id', fields.CharField(null=True, max_length=16)),
                ('field_names', fields.JSONField(default=list, encoder=JSON_DUMPS, decoder=loads)),
                ('changed_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('status', fields.CharField(default='pending', max_length=16)),
                ('attempts', fields.IntField(default=0)),
                ('retry_from', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('next_attempt_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('lease_until', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('lease_token', fields.CharField(null=True, max_length=32)),
                ('last_error', fields.CharField(null=True, max_length=255)),
                ('answered_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('answer_status', fields.IntField(null=True)),
                ('answer_sha256', fields.CharField(null=True, max_length=64)),
            ],
            options={'table': 'recipient_notices', 'app': 'models', 'indexes': [Index(fields=['status', 'next_attempt_at'], name='recipient_notices_due'), Index(fields=['subject_id', 'changed_at'], name='recipient_notices_by_subject')], 'pk_attr': 'id', 'table_description': 'One change to tell one recipient, and how the telling went.'},
            bases=['Model'],
        ),
    ]
