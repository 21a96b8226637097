"""idempotency_keys: the answer of each write sent with an Idempotency-Key header, inserted in the write's
transaction, so the same request sent again is answered again instead of recorded twice (server.kernel.idempotency).
"""

from tortoise import migrations
from tortoise.migrations import operations as ops
from orjson import loads
from tortoise.fields.data import JSON_DUMPS
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0017_rate_limits')]

    initial = False

    operations = [
        ops.CreateModel(
            name='IdempotencyKey',
            fields=[
                ('id', fields.CharField(primary_key=True, max_length=64, unique=True, db_index=True)),
                ('fingerprint', fields.CharField(max_length=64)),
                ('status', fields.IntField()),
                ('headers', fields.JSONField(default=list, encoder=JSON_DUMPS, decoder=loads)),
                ('body', fields.BinaryField()),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'idempotency_keys', 'app': 'models', 'indexes': [Index(fields=['expires_at'], name='idempotency_keys_expiry')], 'pk_attr': 'id', 'table_description': 'One key of one client and the response its write answered.'},
            bases=['Model'],
        ),
    ]
