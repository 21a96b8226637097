from tortoise import migrations
from tortoise.migrations import operations as ops
from orjson import loads
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from uuid import uuid4
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    initial = True

    operations = [
        ops.CreateModel(
            name='ApiClient',
            fields=[
                ('client_id', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=64)),
                ('name', fields.CharField(max_length=128)),
                ('secret_sha256', fields.CharField(max_length=64)),
                ('scopes', fields.CharField(max_length=255)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('disabled_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'api_clients', 'app': 'models', 'pk_attr': 'client_id', 'table_description': 'A machine client. The secret is 256 random bits, so a SHA-256 of it is enough (no password stretching).'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Channel',
            fields=[
                ('code', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=16)),
            ],
            options={'table': 'channels', 'app': 'models', 'pk_attr': 'code', 'table_description': 'A contact channel: email, sms, phone, post, push, web.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='PolicyVersion',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('document', fields.CharField(max_length=64)),
                ('version', fields.CharField(max_length=32)),
                ('lang', fields.CharField(max_length=8)),
                ('title', fields.CharField(max_length=255)),
                ('effective_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('material', fields.BooleanField(default=False)),
                ('purposes', fields.JSONField(default=list, encoder=JSON_DUMPS, decoder=loads)),
                ('summary', fields.TextField(default='', unique=False)),
                ('sha256', fields.CharField(max_length=64)),
                ('content', fields.TextField(unique=False)),
                ('source_path', fields.CharField(max_length=255)),
                ('published_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'policy_versions', 'app': 'models', 'unique_together': (('document', 'version', 'lang'),), 'pk_attr': 'id', 'table_description': 'One immutable published text in one language, with the SHA-256 of its exact bytes.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Purpose',
            fields=[
                ('code', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=64)),
                ('legal_basis', fields.CharField(max_length=32)),
                ('channel_basis', fields.JSONField(default=dict, encoder=JSON_DUMPS, decoder=loads)),
                ('channels', fields.JSONField(default=list, encoder=JSON_DUMPS, decoder=loads)),
                ('validity_days', fields.IntField(null=True)),
                ('double_opt_in', fields.BooleanField(default=False)),
                ('marketing', fields.BooleanField(default=False)),
                ('banner_category', fields.CharField(null=True, max_length=16)),
                ('third_parties', fields.JSONField(default=list, encoder=JSON_DUMPS, decoder=loads)),
                ('titles', fields.JSONField(default=dict, encoder=JSON_DUMPS, decoder=loads)),
                ('descriptions', fields.JSONField(default=dict, encoder=JSON_DUMPS, decoder=loads)),
            ],
            options={'table': 'purposes', 'app': 'models', 'pk_attr': 'code', 'table_description': 'Why data is processed, as declared in `policy_docs/purposes.yaml`.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Subject',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('ref', fields.CharField(unique=True, max_length=255)),
                ('pseudonym', fields.CharField(unique=True, max_length=64)),
                ('email', fields.CharField(null=True, max_length=320)),
                ('phone', fields.CharField(null=True, max_length=32)),
                ('locale', fields.CharField(null=True, max_length=16)),
                ('last_seq', fields.IntField(default=0, db_default=0)),
                ('head_hash', fields.CharField(default='0000000000000000000000000000000000000000000000000000000000000000', max_length=64)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('erased_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('restricted_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'subjects', 'app': 'models', 'pk_attr': 'id', 'table_description': "A person, known by the company's own `ref`."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ConsentEvent',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('subject', fields.ForeignKeyField('models.Subject', source_field='subject_id', db_constraint=True, to_field='id', related_name='events', on_delete=OnDelete.RESTRICT)),
                ('seq', fields.IntField()),
                ('purpose', fields.ForeignKeyField('models.Purpose', source_field='purpose_id', db_constraint=True, to_field='code', related_name='events', on_delete=OnDelete.RESTRICT)),
                ('channel', fields.ForeignKeyField('models.Channel', source_field='channel_id', db_constraint=True, to_field='code', related_name='events', on_delete=OnDelete.RESTRICT)),
                ('action', fields.CharField(max_length=16)),
                ('status', fields.CharField(max_length=32)),
                ('policy_version', fields.ForeignKeyField('models.PolicyVersion', source_field='policy_version_id', db_constraint=True, to_field='id', related_name='events', on_delete=OnDelete.RESTRICT)),
                ('touchpoint', fields.CharField(max_length=32)),
                ('method', fields.CharField(max_length=32)),
                ('actor_type', fields.CharField(max_length=16)),
                ('actor_id', fields.CharField(null=True, max_length=128)),
                ('ui_snapshot_sha256', fields.CharField(null=True, max_length=64)),
                ('evidence', fields.JSONField(default=dict, encoder=JSON_DUMPS, decoder=loads)),
                ('recorded_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('valid_until', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('prev_hash', fields.CharField(max_length=64)),
                ('hash', fields.CharField(unique=True, max_length=64)),
            ],
            options={'table': 'consent_events', 'app': 'models', 'unique_together': (('subject', 'seq'),), 'indexes': [Index(fields=['recorded_at'])], 'pk_attr': 'id', 'table_description': 'One decision about one subject x purpose x channel. Rows are inserted, never updated or deleted.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ConsentState',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('subject', fields.ForeignKeyField('models.Subject', source_field='subject_id', db_constraint=True, to_field='id', related_name='states', on_delete=OnDelete.RESTRICT)),
                ('purpose', fields.ForeignKeyField('models.Purpose', source_field='purpose_id', db_constraint=True, to_field='code', related_name='states', on_delete=OnDelete.RESTRICT)),
                ('channel', fields.ForeignKeyField('models.Channel', source_field='channel_id', db_constraint=True, to_field='code', related_name='states', on_delete=OnDelete.RESTRICT)),
                ('status', fields.CharField(max_length=32)),
                ('event', fields.ForeignKeyField('models.ConsentEvent', source_field='event_id', db_constraint=True, to_field='id', related_name='states', on_delete=OnDelete.RESTRICT)),
                ('policy_version', fields.ForeignKeyField('models.PolicyVersion', source_field='policy_version_id', db_constraint=True, to_field='id', related_name='states', on_delete=OnDelete.RESTRICT)),
                ('since', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('valid_until', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'consent_states', 'app': 'models', 'unique_together': (('subject', 'purpose', 'channel'),), 'indexes': [Index(fields=['purpose_id', 'channel_id', 'status'])], 'pk_attr': 'id', 'table_description': 'Current status per subject x purpose x channel, a projection of the ledger written in the same transaction.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='UISnapshot',
            fields=[
                ('sha256', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=64)),
                ('kind', fields.CharField(max_length=32)),
                ('content_type', fields.CharField(default='text/html; charset=utf-8', max_length=64)),
                ('content', fields.TextField(unique=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'ui_snapshots', 'app': 'models', 'pk_attr': 'sha256', 'table_description': 'The exact text/HTML a person was shown, stored once under its SHA-256 (proof of display).'},
            bases=['Model'],
        ),
    ]
