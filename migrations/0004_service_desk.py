from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0003_transparency_log')]

    initial = False

    operations = [
        ops.CreateModel(
            name='StaffAccount',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('email', fields.CharField(unique=True, max_length=320)),
                ('name', fields.CharField(max_length=128)),
                ('role', fields.CharField(max_length=16)),
                ('password_hash', fields.CharField(null=True, max_length=255)),
                ('oidc_issuer', fields.CharField(null=True, max_length=255)),
                ('oidc_subject', fields.CharField(null=True, max_length=255)),
                ('failed_logins', fields.IntField(default=0, db_default=0)),
                ('locked_until', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('session_epoch', fields.IntField(default=0, db_default=0)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('last_login_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('disabled_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'staff_accounts', 'app': 'models', 'unique_together': (('oidc_issuer', 'oidc_subject'),), 'pk_attr': 'id', 'table_description': 'A member of staff who signs in to the service desk console, with one role (GDPR 25 and 32).'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='DataSubjectRequest',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('subject', fields.ForeignKeyField('models.Subject', source_field='subject_id', db_constraint=True, to_field='id', related_name='dsr_requests', on_delete=OnDelete.RESTRICT)),
                ('kind', fields.CharField(max_length=16)),
                ('channel', fields.CharField(max_length=32)),
                ('received_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('original_due_on', fields.DateField()),
                ('due_on', fields.DateField()),
                ('extension_reason', fields.TextField(null=True, unique=False)),
                ('extended_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('status', fields.CharField(default='open', db_default='open', max_length=24)),
                ('owner', fields.ForeignKeyField('models.StaffAccount', source_field='owner_id', null=True, db_constraint=True, to_field='id', related_name='dsr_requests', on_delete=OnDelete.RESTRICT)),
                ('opened_by', fields.CharField(max_length=64)),
                ('details', fields.TextField(default='', unique=False)),
                ('outcome', fields.TextField(default='', unique=False)),
                ('closed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('last_reminder_on', fields.DateField(null=True)),
            ],
            options={'table': 'dsr_requests', 'app': 'models', 'indexes': [Index(fields=['status', 'due_on'])], 'pk_attr': 'id', 'table_description': 'A data-subject request (GDPR 15 to 21) and its clock: due one month after receipt (GDPR 12(3)).'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='DsrHistory',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('request', fields.ForeignKeyField('models.DataSubjectRequest', source_field='request_id', db_constraint=True, to_field='id', related_name='history', on_delete=OnDelete.RESTRICT)),
                ('at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('actor', fields.CharField(max_length=64)),
                ('action', fields.CharField(max_length=32)),
                ('note', fields.TextField(default='', unique=False)),
            ],
            options={'table': 'dsr_history', 'app': 'models', 'indexes': [Index(fields=['request_id', 'at'])], 'pk_attr': 'id', 'table_description': 'One change to a data-subject request: who, when, what (GDPR 5(2) accountability).'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Suppression',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('kind', fields.CharField(max_length=8)),
                ('digest', fields.CharField(unique=True, max_length=64)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'suppressions', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A keyed hash (HMAC-SHA256 under the server secret) of an erased email address or phone number.'},
            bases=['Model'],
        ),
    ]
