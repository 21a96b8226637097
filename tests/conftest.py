"""Shared fixtures: a real database per test (SQLite file or PostgreSQL database), the app over real ASGI HTTP."""

from __future__ import annotations

import base64
import contextlib
import secrets
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from hypothesis import settings as hypothesis_settings
from starlette.applications import Starlette
from starlette.testclient import TestClient
from tortoise import connections

from server.app import create_app
from server.auth.clients import create_client
from server.services import Services
from server.settings import Settings
from server.staff import accounts
from tests.databases import POLICY_DIR, PostgresTemplate, SqliteTemplate, forget_cached_sql, postgres_admin_url

# No per-example deadline: a garbage collection or a slow minute on a 2-core CI machine is not a failure of the code
# under test (the properties, not their speed, are what these tests check; speed is measured under bench/).
hypothesis_settings.register_profile("suite", deadline=None)
hypothesis_settings.load_profile("suite")

BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the developer's configuration, nor SQL that Tortoise cached for the other backend."""
    forget_cached_sql()
    for name in ("DATABASE_URL", "SECRET_KEY", "PUBLIC_URL", "POLICY_DIR", "DATA_DIR", "SIGNING_KEYS_DIR"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _cheap_staff_password_hashes(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Staff passwords hashed with argon2id at its lowest cost: the same code, hash format and checks, without
    the default cost (about 0.25 s a hash or a check on a slow day here) on every one of the suite's hundreds of
    sign-ins. `@pytest.mark.real_password_cost` keeps the default: one test checks it is what is stored."""
    if request.node.get_closest_marker("real_password_cost") is None:
        monkeypatch.setattr(accounts, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> SqliteTemplate:
    return SqliteTemplate(tmp_path_factory.mktemp("sqlite"))


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[PostgresTemplate]:
    url = postgres_admin_url()
    if url is None:
        pytest.skip("PostgreSQL tests need TEST_POSTGRES_URL (scripts/test sets it)")
    template = PostgresTemplate(url)
    yield template
    template.close()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, migrated database with the sample policies synced."""
    template: Any = request.getfixturevalue(f"{backend}_template")
    url, name = template.new()
    yield url
    template.drop(name)


@dataclass
class Clock:
    """A clock tests can stop and move; it follows real time until `set` is called."""

    fixed: datetime | None = None

    def __call__(self) -> datetime:
        return self.fixed or datetime.now(UTC)

    def set(self, value: datetime) -> None:
        self.fixed = value

    def advance(self, **delta: float) -> None:
        self.fixed = self() + timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="session")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keys")


@pytest.fixture
def settings(database_url: str, keys_dir: Path) -> Settings:
    return app_settings(database_url, keys_dir)


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
        # No worker processes to spawn for every app a test starts: tests/test_stream_workers.py starts them.
        stream_workers=0,
    )


@pytest.fixture
def client(settings: Settings, clock: Clock) -> Iterator[TestClient]:
    with TestClient(create_app(settings, clock=clock), raise_server_exceptions=False) as test_client:
        yield test_client


ALL_SCOPES = "consent:check consent:read consent:write proof:read admin"


def bearer(client: TestClient, scopes: str = ALL_SCOPES) -> dict[str, str]:
    """Authorization header of a real token: a client is created, then uses the token endpoint."""
    assert client.portal is not None
    new = client.portal.call(create_client, "test", scopes)
    basic = base64.b64encode(f"{new.client_id}:{new.client_secret}".encode()).decode()
    response = client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, headers={"Authorization": f"Basic {basic}"}
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@pytest.fixture
def auth(client: TestClient) -> dict[str, str]:
    return bearer(client)


def confirmed_by_import(decisions: list[tuple[str, str, str]]) -> dict[str, str]:
    """The body's touchpoint for `decisions`: an API client records `confirm` only as an import of a confirmation
    collected elsewhere (the person's click on the mailed link is the preference center's: test_preferences_mail)."""
    return {"touchpoint": "import"} if any(action == "confirm" for _, _, action in decisions) else {}


def record(
    client: TestClient,
    headers: dict[str, str],
    ref: str,
    decisions: list[tuple[str, str, str]],
    policy: str = "privacy-policy/2/fr",
    **extra: Any,
) -> Any:
    document, version, lang = policy.split("/")
    body = {
        "policy": {"document": document, "version": version, "lang": lang},
        "decisions": [{"purpose": p, "channel": c, "action": a} for p, c, a in decisions],
        **extra,
    }
    return client.post(f"/v1/subjects/{ref}/consents", json=body, headers=headers)


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


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    """The command line reads the same database and secret as the app under test."""
    monkeypatch.chdir(tmp_path)  # no developer .env
    settings = settings.with_overrides(mail_dir=tmp_path / "mail")
    for name, value in {
        "DATABASE_URL": settings.database_url,
        "SECRET_KEY": settings.secret_key,
        "SIGNING_KEYS_DIR": str(settings.signing_keys_dir),
        "POLICY_DIR": str(settings.policy_dir),
        "PUBLIC_URL": settings.public_url,
        "MAIL_DIR": str(settings.mail_dir),
        "DATA_DIR": str(tmp_path / "data"),
    }.items():
        monkeypatch.setenv(name, value)
    return settings


@contextlib.contextmanager
def sqlite_write_lock_held(client: TestClient, settings: Settings) -> Iterator[None]:
    """Another process's connection holds SQLite's write lock for the block, and the app waits 200 ms for it
    (instead of its 10 s busy timeout): what the app's writes meet when a CLI or a backup keeps the lock."""

    async def short_busy_timeout() -> None:
        await connections.get("default").execute_script("PRAGMA busy_timeout = 200")

    run(client, short_busy_timeout)
    holder = sqlite3.connect(settings.database_url.removeprefix("sqlite://"), isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()
