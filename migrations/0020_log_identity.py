"""log_identity: the transparency log's id, stored once instead of derived from PUBLIC_URL at run time.

The table is created empty. The first process of the new code to start (or `ledger checkpoint`) fills it
(`server.proof.log.TransparencyLog.identity`): with the log id of the database's first signed checkpoint, or with its
own PUBLIC_URL when no checkpoint was ever signed. There, not here: a migration does not read the settings, and one
code path serves a new database and an existing one."""

from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0019_client_lifecycle_and_sign_in_throttles')]

    initial = False

    operations = [
        ops.CreateModel(
            name='LogIdentity',
            fields=[
                ('id', fields.SmallIntField(generated=False, primary_key=True, unique=True, db_index=True)),
                ('log_id', fields.CharField(max_length=2048)),
                ('source', fields.CharField(max_length=16)),
                ('adopted_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'log_identity', 'app': 'models', 'pk_attr': 'id', 'table_description': "The transparency log's id, the `log_id` every checkpoint signs, fixed when the log is created."},
            bases=['Model'],
        ),
    ]
