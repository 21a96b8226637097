"""idempotency_keys.subject: the pseudonym of the subject a keyed write named, so that an erasure deletes the stored
answers that name the person (GDPR 17; server.dsr.effects.erase). Keys stored before this migration have none and
expire within IDEMPOTENCY_KEY_HOURS; an erasure meanwhile leaves them until then."""

from tortoise import fields, migrations
from tortoise.indexes import Index
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("models", "0021_former_contacts")]

    initial = False

    operations = [
        ops.AddField(
            model_name="IdempotencyKey",
            name="subject",
            field=fields.CharField(null=True, max_length=64),
        ),
        ops.AddIndex(
            model_name="IdempotencyKey",
            index=Index(fields=["subject"], name="idempotency_keys_by_subject"),
        ),
    ]
