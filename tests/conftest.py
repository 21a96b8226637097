"""Shared fixtures: a real database per test (SQLite file or PostgreSQL database), the app over real ASGI HTTP.

Only fixtures live here (and the suite's Hypothesis profile); the plain helpers the tests share are in
tests/helpers/.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from hypothesis import settings as hypothesis_settings
from starlette.testclient import TestClient

from server.app import create_app
from server.settings import Settings
from server.staff import accounts
from tests.databases import PostgresTemplate, SqliteTemplate, forget_cached_sql, postgres_admin_url
from tests.helpers.api import bearer
from tests.helpers.app import app_settings
from tests.helpers.clock import Clock

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


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="session")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keys")


@pytest.fixture
def settings(database_url: str, keys_dir: Path) -> Settings:
    return app_settings(database_url, keys_dir)


@pytest.fixture
def client(settings: Settings, clock: Clock) -> Iterator[TestClient]:
    with TestClient(create_app(settings, clock=clock), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def auth(client: TestClient) -> dict[str, str]:
    return bearer(client)


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
