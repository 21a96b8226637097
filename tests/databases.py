"""Test databases: one migrated, policy-synced template per backend per session, copied for every test.

SQLite: the template is a file, copied per test. PostgreSQL: the template is a database, and each test gets
`CREATE DATABASE ... TEMPLATE ...` (fast, and a real, isolated database). PostgreSQL runs when TEST_POSTGRES_URL is
set (the test command sets it to the local server); a set but unreachable server is an error, not a skip.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from tortoise import Tortoise
from tortoise.backends.base.executor import EXECUTOR_CACHE

from server.db import tortoise_config
from server.migrate import apply_migrations
from server.policies.sync import sync_policies
from tests.helpers.paths import REPO

POLICY_DIR = REPO / "policy_docs"
_counter = itertools.count()
T = TypeVar("T")


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run` on a thread of its own. A test process that ran a browser test has an event loop running on
    its main thread (pytest-playwright's sync API keeps one for the session), where `asyncio.run` is refused; with
    the suite spread over processes, any test may come after a browser test."""
    with ThreadPoolExecutor(1, thread_name_prefix="run_sync") as pool:
        return pool.submit(asyncio.run, coroutine).result()


def postgres_admin_url() -> str | None:
    return os.environ.get("TEST_POSTGRES_URL") or None


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


def forget_cached_sql() -> None:
    """Tortoise caches insert SQL per connection name and table, not per dialect; tests switch dialects."""
    EXECUTOR_CACHE.clear()


async def prepare(url: str, policy_dir: Path = POLICY_DIR) -> None:
    forget_cached_sql()
    await apply_migrations(url)
    await Tortoise.init(config=tortoise_config(url))
    try:
        await sync_policies(policy_dir)
    finally:
        await Tortoise.close_connections()


class SqliteTemplate:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.template = directory / "template.sqlite3"
        run_sync(prepare(f"sqlite://{self.template}"))

    def new(self) -> tuple[str, None]:
        path = self.directory / f"t{next(_counter)}.sqlite3"
        shutil.copyfile(self.template, path)
        return f"sqlite://{path}", None

    def drop(self, name: None) -> None:
        return None


class PostgresTemplate:
    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.prefix = f"cl_{os.getpid()}"
        self.template = f"{self.prefix}_tpl"
        run_sync(self._create(self.template, None))
        run_sync(prepare(with_database(admin_url, self.template)))

    async def _admin(self, sql: str) -> None:
        conn = await asyncpg.connect(asyncpg_dsn(self.admin_url))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def _create(self, name: str, template: str | None) -> None:
        await self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        suffix = f' TEMPLATE "{template}"' if template else ""
        await self._admin(f'CREATE DATABASE "{name}"{suffix}')

    def new(self) -> tuple[str, str]:
        name = f"{self.prefix}_t{next(_counter)}"
        run_sync(self._create(name, self.template))
        return with_database(self.admin_url, name), name

    def empty(self) -> tuple[str, str]:
        name = f"{self.prefix}_e{next(_counter)}"
        run_sync(self._create(name, None))
        return with_database(self.admin_url, name), name

    def drop(self, name: str | None) -> None:
        if name:
            run_sync(self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def close(self) -> None:
        self.drop(self.template)


def asyncpg_dsn(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(("postgresql", parts.netloc, parts.path, "", ""))
