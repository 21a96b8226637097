"""Indexes on `receipts.subject_id` and `dsr_requests.subject_id`: a subject's receipts (proof bundles, the
desk's export) and requests (the customer page, erasure) were found by scanning every row, and so was every foreign
key check on a change of a subject row's id."""

from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0012_breaches')]

    initial = False

    operations = [
        ops.AddIndex(
            model_name='DataSubjectRequest',
            index=Index(fields=['subject_id', 'received_at'], name='dsr_requests_by_subject'),
        ),
        ops.AddIndex(
            model_name='Receipt',
            index=Index(fields=['subject_id', 'created_at'], name='receipts_by_subject'),
        ),
    ]
