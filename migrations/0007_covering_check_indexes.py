"""Covering indexes for the consent-check read: a subject by ref, and its state for one purpose x channel.

With them a check reads two index entries and no table row (bench/README.md, "Where a stream's time goes", has
the figures). Named, because the SQLite reader names them (INDEXED BY).
"""

from tortoise import migrations
from tortoise.indexes import Index
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [('models', '0006_lean_transparency_log')]

    initial = False

    operations = [
        ops.AddIndex(
            model_name='ConsentState',
            index=Index(fields=['subject_id', 'purpose_id', 'channel_id', 'status', 'since', 'valid_until', 'policy_version_id', 'event_id'], name='consent_states_check'),
        ),
        ops.AddIndex(
            model_name='Subject',
            index=Index(fields=['ref', 'id', 'erased_at', 'restricted_at'], name='subjects_check_by_ref'),
        ),
    ]
