"""`python -m server ledger ...` as a subprocess on the test database, and the tampered ledger that the verify and
repair tests share: `seed` writes it, an attacker's raw SQL (`disable_append_only`, then `tests.helpers.sql.sql`)
changes it, `assert_detected` reads what `verify` says of it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from starlette.testclient import TestClient

from server.settings import Settings
from tests.databases import POLICY_DIR
from tests.helpers.api import record
from tests.helpers.sql import is_sqlite, sql

# What an attacker runs to get past the append-only triggers of migration 0002.
SQLITE_DROP_TRIGGERS = [
    "DROP TRIGGER consent_events_no_update",
    "DROP TRIGGER consent_events_no_delete",
]
# USER triggers are the append-only ones; ALL also switches off the foreign keys that point at events.
POSTGRES_DISABLE_TRIGGERS = "ALTER TABLE consent_events DISABLE TRIGGER USER"
POSTGRES_DISABLE_ALL_TRIGGERS = "ALTER TABLE consent_events DISABLE TRIGGER ALL"
SUBJECT_A = "(SELECT id FROM subjects WHERE ref = 'cust-a')"


def disable_append_only(database_url: str, *, foreign_keys_too: bool = False) -> None:
    """What an attacker does first: drop or disable the triggers that refuse UPDATE and DELETE on events.

    The stdlib sqlite3 connection does not enforce foreign keys (PRAGMA foreign_keys is off by default); on
    PostgreSQL, deleting an event a state row points at also needs the foreign key triggers switched off."""
    if is_sqlite(database_url):
        sql(database_url, *SQLITE_DROP_TRIGGERS)
    else:
        sql(database_url, POSTGRES_DISABLE_ALL_TRIGGERS if foreign_keys_too else POSTGRES_DISABLE_TRIGGERS)


def verify(settings: Settings, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return ledger_command(settings, tmp_path, "verify")


def ledger_command(
    settings: Settings, tmp_path: Path, action: str, **environment: str
) -> subprocess.CompletedProcess[str]:
    """`python -m server ledger <action>` as a subprocess on the database of `settings`."""
    return subprocess.run(
        [sys.executable, "-m", "server", "ledger", action],
        env={**command_environment(settings, tmp_path), **environment},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def command_environment(settings: Settings, tmp_path: Path) -> dict[str, str]:
    """The environment of a `python -m server` subprocess on the database of `settings`."""
    return {
        "DATABASE_URL": settings.database_url,
        "SECRET_KEY": settings.secret_key,
        "DATA_DIR": str(tmp_path / "data"),
        "SIGNING_KEYS_DIR": str(tmp_path / "data" / "signing-keys"),
        "POLICY_DIR": str(POLICY_DIR),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    }


def broken_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.startswith("BROKEN")]


def assert_detected(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    """Exit 1, one broken chain (cust-a's, never the untouched cust-b), naming every `expected` fragment.

    The transparency-log audit may report the same tampering a second time, from the log's side."""
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "FAILED" in result.stdout, output
    lines = [line for line in broken_lines(result) if "subject" in line]
    assert len(lines) == 1, output
    line = lines[0]
    assert "'cust-a'" in line, output
    assert "cust-b" not in output, output
    for fragment in expected:
        assert fragment in line, (fragment, output)
    return line


def seed(client: TestClient, auth: dict[str, str]) -> None:
    """cust-a: seq 1 offers/email grant, seq 2 offers/sms grant, seq 3 offers/email withdraw, seq 4 offers/sms
    withdraw (states point at seq 3 and 4). cust-b: one grant, never touched by the tampering."""
    calls: list[tuple[str, list[tuple[str, str, str]]]] = [
        ("cust-a", [("offers", "email", "grant"), ("offers", "sms", "grant")]),
        ("cust-a", [("offers", "email", "withdraw")]),
        ("cust-a", [("offers", "sms", "withdraw")]),
        ("cust-b", [("offers", "email", "grant")]),
    ]
    for ref, decisions in calls:
        response = record(client, auth, ref, decisions, evidence={"ip": "203.0.113.9"})
        assert response.status_code == 201, response.text
