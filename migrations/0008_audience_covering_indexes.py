"""Covering indexes for the audience export: one purpose x channel's states in subject order, and a subject by id.

The export reads the states of one pair from the first, in subject id order, and looks each subject up in the
second: the lookups come in index order, and neither read touches a table row (bench/README.md, "Where an audience
export's time goes", has the figures). The first replaces the index on (purpose, channel, status), whose only reader
was the export. Named, because the SQLite reader names them (INDEXED BY).
"""

from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0007_covering_check_indexes')]

    initial = False

    operations = [
        ops.RemoveIndex(
            model_name='ConsentState',
            name=None,
            fields=['purpose_id', 'channel_id', 'status'],
        ),
        ops.AddIndex(
            model_name='ConsentState',
            index=Index(fields=['purpose_id', 'channel_id', 'subject_id', 'status', 'since', 'valid_until', 'policy_version_id'], name='consent_states_by_pair'),
        ),
        ops.AddIndex(
            model_name='Subject',
            index=Index(fields=['id', 'ref', 'erased_at', 'restricted_at'], name='subjects_audience_by_id'),
        ),
    ]
