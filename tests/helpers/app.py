"""The app under test: its settings, its event loop, its shared services."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.testclient import TestClient

from server.services import Services
from server.settings import Settings
from tests.databases import POLICY_DIR


def app_settings(database_url: str, keys_dir: Path) -> Settings:
    """The settings of an app under test, on `database_url`."""
    return Settings(
        database_url=database_url,
        secret_key=secrets.token_urlsafe(32),
        signing_keys_dir=keys_dir,
        public_url="http://testserver",
        policy_dir=POLICY_DIR,
        environment="test",
        # Tests sign checkpoints when they mean to: a background round in a test that outlasts the interval
        # would add a checkpoint the test did not expect.
        checkpoint_interval_s=0,
        # Notices to recipients are sent when a test asks (`services.recipients.deliver_due`).
        recipient_poll_s=0,
        # Nor are reminders mailed by a background job (`send_reminders` is called by the tests that mean it).
        dsr_reminder_poll_s=0,
        # No worker processes to spawn for every app a test starts: tests/consent/test_stream_workers.py starts them.
        stream_workers=0,
    )


def run(client: TestClient, fn: Callable[..., Any], *args: Any) -> Any:
    """Run a coroutine function in the app's event loop (where Tortoise is open)."""
    assert client.portal is not None
    return client.portal.call(fn, *args)


def services_of(client: TestClient) -> Services:
    """The app's shared services (settings, catalog, ledger, keys, checks)."""
    app = client.app
    assert isinstance(app, Starlette)
    services: Services = app.state.services
    return services
