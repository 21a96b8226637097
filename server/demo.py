"""Demo data for the embedded default: policies, a demo API client and a few subjects with varied histories."""

from __future__ import annotations

import ipaddress
import json

from tortoise import Tortoise

from server.auth.clients import create_client
from server.clock import utc_now
from server.composition import build_services
from server.db import tortoise_config
from server.files import write_private
from server.ledger.append import Decision, RecordRequest
from server.migrate import apply_migrations
from server.models import Subject
from server.policies.sync import sync_policies
from server.settings import Settings
from server.staff.accounts import create_staff

DEMO_SUBJECTS: list[tuple[str, str, list[tuple[str, str, str]]]] = [
    (
        "demo-alice",
        "privacy-policy/2/fr",
        [
            ("newsletter", "email", "grant"),
            ("newsletter", "email", "confirm"),
            ("offers", "sms", "grant"),
            ("partners", "email", "grant"),
        ],
    ),
    ("demo-bob", "privacy-policy/2/en", [("offers", "email", "grant"), ("partners", "sms", "deny")]),
    (
        "demo-chloe",
        "privacy-policy/1/fr",
        [("partners", "email", "grant"), ("offers", "email", "grant"), ("offers", "email", "withdraw")],
    ),
]


async def prepare_demo(settings: Settings) -> str:
    """Idempotent: migrate, sync, create the demo client once, seed the demo subjects once; returns the banner."""
    await apply_migrations(settings.database_url)
    await Tortoise.init(config=tortoise_config(settings.database_url))
    try:
        await sync_policies(settings.policy_dir)
        creds_path = settings.signing_keys_dir.parent / "demo-client.json"
        if creds_path.is_file():
            creds = json.loads(creds_path.read_text())
        else:
            client = await create_client("demo", "consent:check consent:read consent:write proof:read admin")
            creds = {
                "client_id": client.client_id,
                "client_secret": client.client_secret,
                "scopes": client.scopes,
            }
            write_private(creds_path, json.dumps(creds).encode())
        staff_path = settings.signing_keys_dir.parent / "demo-staff.json"
        if staff_path.is_file():
            staff = json.loads(staff_path.read_text())
        else:
            new = await create_staff("supervisor@demo-shop.example", "Demo Supervisor", "supervisor")
            staff = {"email": new.account.email, "password": new.password}
            write_private(staff_path, json.dumps(staff).encode())
        ledger = build_services(settings, utc_now).ledger
        for ref, policy, decisions in DEMO_SUBJECTS:
            if await Subject.exists(ref=ref):
                continue
            for purpose, channel, action in decisions:
                await ledger.record(
                    RecordRequest(
                        ref=ref,
                        policy=policy,
                        decisions=[Decision(purpose, channel, action)],
                        touchpoint="import",
                        method="demo",
                        actor_type="system",
                        actor_id="demo",
                    )
                )
    finally:
        await Tortoise.close_connections()
    return describe(settings, creds, staff)


def listen_url(host: str, port: int) -> str:
    """Where a browser on this machine reaches a server listening on `host`:`port` (a wildcard on loopback)."""
    if not host or _is_wildcard(host):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _is_wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:  # a name
        return False


def describe(settings: Settings, creds: dict[str, str], staff: dict[str, str]) -> str:
    """What `demo` prints: the URLs to open, where this server listens, and the demo accounts. When PUBLIC_URL
    (links in mails, the token issuer, the banner's address) is not where the server listens, it says so: with
    only PORT changed, PUBLIC_URL still names port 8000."""
    base = listen_url(settings.host, settings.port)
    lines = [
        "",
        "Consent ledger demo is starting.",
        f"  Preference center:   {base}/demo  (demo-alice, embedded in a fake shop page)",
        f"  Cookie banner demo:  {base}/demo/banner",
        f"  Dev outbox (mails):  {base}/dev/mail",
        f"  Service desk:        {base}/console  (sign in: {staff['email']} / {staff['password']})",
        "                       more accounts: python -m server staff create --email E --name N --role agent",
        f"  API (OpenAPI 3.1):   {base}/openapi.json",
        f"  Published policies:  {base}/v1/policies",
        f"  Readiness:           {base}/readyz",
        f"  Demo API client:     client_id={creds['client_id']} client_secret={creds['client_secret']}",
        f"  Get a token:         curl -s -u {creds['client_id']}:{creds['client_secret']} "
        f"-d grant_type=client_credentials {base}/oauth/token",
        f"  Then:                curl -s -H 'Authorization: Bearer TOKEN' {base}/v1/subjects/demo-alice/consents",
    ]
    if settings.public_url.rstrip("/") != base:
        lines += [
            f"  Note: PUBLIC_URL is {settings.public_url}, but this server listens on {base}. Links in mails,",
            "        the token issuer and the banner's address use PUBLIC_URL: set it to the address people reach.",
        ]
    return "\n".join([*lines, ""])
