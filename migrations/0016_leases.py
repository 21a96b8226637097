"""leases: which server process runs each background job (checkpoints, recipient deliveries, reminders) now
(server.leases)."""

from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0015_check_ref_hash')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Lease',
            fields=[
                ('name', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=64)),
                ('holder', fields.CharField(default='', max_length=128)),
                ('term', fields.BigIntField(default=0)),
                ('expires_at', fields.FloatField(default=0.0)),
            ],
            options={'table': 'leases', 'app': 'models', 'pk_attr': 'name', 'table_description': "One background job's lease: the process holding it runs the job until `expires_at`."},
            bases=['Model'],
        ),
    ]
