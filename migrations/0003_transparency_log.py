from tortoise import migrations
from tortoise.migrations import operations as ops
from orjson import loads
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from uuid import uuid4
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0002_append_only_ledger')]

    initial = False

    operations = [
        ops.CreateModel(
            name='AccessLog',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('actor_type', fields.CharField(max_length=16)),
                ('actor_id', fields.CharField(max_length=128)),
                ('action', fields.CharField(max_length=32)),
                ('subject', fields.ForeignKeyField('models.Subject', source_field='subject_id', null=True, db_constraint=True, to_field='id', related_name='access_log', on_delete=OnDelete.RESTRICT)),
                ('detail', fields.JSONField(default=dict, encoder=JSON_DUMPS, decoder=loads)),
            ],
            options={'table': 'access_log', 'app': 'models', 'indexes': [Index(fields=['subject_id', 'at'])], 'pk_attr': 'id', 'table_description': 'Who read or exported what, when (GDPR 5(2), 32): proofs, exports and history reads by staff or clients.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Checkpoint',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('tree_size', fields.BigIntField(unique=True)),
                ('root_hash', fields.CharField(max_length=64)),
                ('timestamp', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('jws', fields.TextField(unique=False)),
            ],
            options={'table': 'checkpoints', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A signed statement of the whole log: tree size, Merkle root, time (RFC 6962 signed tree head style).'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='LogEntry',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('position', fields.BigIntField(unique=True)),
                ('event', fields.OneToOneField('models.ConsentEvent', source_field='event_id', db_constraint=True, to_field='id', related_name='log_entry', on_delete=OnDelete.RESTRICT)),
                ('leaf_hash', fields.CharField(max_length=64)),
            ],
            options={'table': 'log_entries', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A leaf of the transparency log: position -> event, with the RFC 6962 leaf hash of the event hash.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='LogQueue',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('event', fields.OneToOneField('models.ConsentEvent', source_field='event_id', db_constraint=True, to_field='id', related_name='queued', on_delete=OnDelete.RESTRICT)),
            ],
            options={'table': 'log_queue', 'app': 'models', 'pk_attr': 'id', 'table_description': 'Events committed but not yet given a log position. The sequencer drains it in commit order.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='MerkleNode',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('level', fields.SmallIntField()),
                ('index', fields.BigIntField()),
                ('hash', fields.CharField(max_length=64)),
            ],
            options={'table': 'merkle_nodes', 'app': 'models', 'unique_together': (('level', 'index'),), 'pk_attr': 'id', 'table_description': 'The hash of a perfect subtree: `level` L covers leaves [index * 2^L, (index + 1) * 2^L).'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Receipt',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('subject', fields.ForeignKeyField('models.Subject', source_field='subject_id', db_constraint=True, to_field='id', related_name='receipts', on_delete=OnDelete.RESTRICT)),
                ('event_ids', fields.JSONField(default=list, encoder=JSON_DUMPS, decoder=loads)),
                ('jws', fields.TextField(unique=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'receipts', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A signed Kantara-style consent receipt (compact JWS) for the decisions of one record call.'},
            bases=['Model'],
        ),
    ]
