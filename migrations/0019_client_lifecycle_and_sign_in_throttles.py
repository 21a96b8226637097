"""API client lifecycle and staff sign-in throttles.

`api_clients` gains what revocation, rotation and scope changes need: a token generation (a token issued under an
older one is refused), the previous secret's hash and the end of its overlap, the time of the last rotation.
`api_clients_version` is the one counter every change to a client moves, which each server process polls to
refresh its view of revoked clients (`server.auth.revocation`).

`sign_in_throttles` counts failed staff sign-ins per account and per network in one atomic statement each
(`server.staff.throttle`); the read-then-write counter `staff_accounts.failed_logins` and its `locked_until` are
dropped (SQLite 3.35 and later drop a column in place: the table is not rebuilt). A lockout in progress at the
upgrade is forgotten."""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops

from server.migrate import StateOnly

_DROPPED = ("failed_logins", "locked_until")


async def forward(apps, schema_editor) -> None:
    for column in _DROPPED:
        await schema_editor.client.execute_script(f'ALTER TABLE staff_accounts DROP COLUMN "{column}"')


async def backward(apps, schema_editor) -> None:
    client = schema_editor.client
    timestamp = "TIMESTAMPTZ" if client.capabilities.dialect == "postgres" else "TIMESTAMP"
    await client.execute_script('ALTER TABLE staff_accounts ADD COLUMN "failed_logins" INT NOT NULL DEFAULT 0')
    await client.execute_script(f'ALTER TABLE staff_accounts ADD COLUMN "locked_until" {timestamp} NULL')


class Migration(migrations.Migration):
    dependencies = [("models", "0018_idempotency_keys")]

    initial = False

    operations = [
        ops.CreateModel(
            name="ApiClientsVersion",
            fields=[
                ("id", fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ("version", fields.BigIntField(default=0)),
            ],
            options={
                "table": "api_clients_version",
                "app": "models",
                "pk_attr": "id",
                "table_description": "One row (`id` 1) whose `version` moves on in the transaction of every change "
                "to `api_clients`: each server",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="SignInThrottle",
            fields=[
                ("key", fields.CharField(primary_key=True, unique=True, db_index=True, max_length=80)),
                ("failures", fields.IntField(default=0)),
                ("window_start", fields.FloatField()),
                ("locked_until", fields.FloatField(null=True)),
            ],
            options={
                "table": "sign_in_throttles",
                "app": "models",
                "pk_attr": "key",
                "table_description": "One counter: `account:<id>` or `network:<CIDR>` (the client's address cut to "
                "/24 or /48). Times are Unix",
            },
            bases=["Model"],
        ),
        ops.AddField(
            model_name="ApiClient",
            name="previous_secret_sha256",
            field=fields.CharField(null=True, max_length=64),
        ),
        ops.AddField(
            model_name="ApiClient",
            name="previous_secret_until",
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name="ApiClient",
            name="secret_rotated_at",
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name="ApiClient",
            name="token_generation",
            field=fields.IntField(default=0, db_default=0),
        ),
        StateOnly(ops.RemoveField(model_name="StaffAccount", name="failed_logins")),
        StateOnly(ops.RemoveField(model_name="StaffAccount", name="locked_until")),
        ops.RunPython(forward, backward),
    ]
