"""Native migrations: from empty to models, idempotent, and SQLite table rebuilds that keep rows, indexes, triggers."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient
from tortoise import Tortoise, connections
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.context import TortoiseContext
from tortoise.exceptions import IntegrityError, OperationalError
from tortoise.migrations.api import migrate as migrate_api

import server.db
import server.models
from server.app import create_app
from server.auth.keys import KeyStore
from server.db import is_postgres, tortoise_config
from server.ledger.append import Decision, Ledger, RecordRequest
from server.migrate import MigrationError, apply_migrations, pending_changes
from server.models import DataSubjectRequest, DsrHistory, Subject
from server.policies.catalog import Catalog
from server.policies.sync import sync_policies
from server.proof import merkle
from server.proof.log import TransparencyLog
from tests import independent
from tests.databases import POLICY_DIR, SqliteTemplate, forget_cached_sql, run_sync
from tests.helpers.app import app_settings
from tests.helpers.ledger import verify
from tests.helpers.paths import REPO

LOG_ENTRIES = "SELECT position, event_id, leaf_hash FROM log_entries ORDER BY position"
REPO_MIGRATIONS = REPO / "migrations"
LEDGER_TABLES = ("subjects", "consent_events", "consent_states")


# --- helpers ---------------------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def opened(url: str) -> AsyncIterator[BaseDBAsyncClient]:
    """Tortoise opened on `url` with the app's (non-migrating) configuration."""
    forget_cached_sql()
    await Tortoise.init(config=tortoise_config(url))
    try:
        yield connections.get("default")
    finally:
        await Tortoise.close_connections()


async def record_decisions(ref: str) -> None:
    """Two decisions for `ref` through the real write path (events + state rows + chain head)."""
    ledger = Ledger("k" * 40, Catalog(5.0), lambda: datetime.now(UTC))
    await ledger.record(
        RecordRequest(
            ref=ref,
            policy="privacy-policy/2/fr",
            decisions=[Decision("offers", "email", "grant"), Decision("offers", "sms", "grant")],
            touchpoint="api",
            method="api",
            actor_type="client",
            actor_id="test",
        )
    )


def model_tables() -> set[str]:
    return {getattr(server.models, name)._meta.db_table for name in server.models.__all__}


async def table_names(conn: BaseDBAsyncClient) -> set[str]:
    if is_postgres(conn):
        rows = await conn.execute_query_dict("SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public'")
    else:
        rows = await conn.execute_query_dict("SELECT name FROM sqlite_master WHERE type = 'table'")
    return {str(r["name"]) for r in rows}


async def schema_snapshot(conn: BaseDBAsyncClient) -> list[tuple[Any, ...]]:
    """Everything a migration could change: tables, columns, indexes, triggers, and the applied-migration records."""
    if is_postgres(conn):
        queries = [
            "SELECT table_name, column_name, data_type, is_nullable, column_default, character_maximum_length "
            "FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2",
            "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1, 2",
            "SELECT tgname, tgrelid::regclass::text AS tbl FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1",
            "SELECT proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace ORDER BY 1",
        ]
    else:
        queries = ["SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"]
    queries.append("SELECT id, app, name, applied_at FROM tortoise_migrations ORDER BY id")
    snapshot: list[tuple[Any, ...]] = []
    for sql in queries:
        snapshot += [tuple(row.values()) for row in await conn.execute_query_dict(sql)]
    return snapshot


@pytest.fixture
def empty_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: no table at all."""
    if backend == "sqlite":
        yield f"sqlite://{tmp_path / 'empty.sqlite3'}"
        return
    template: Any = request.getfixturevalue("postgres_template")
    url, name = template.empty()
    yield url
    template.drop(name)


# --- both backends ---------------------------------------------------------------------------------------------------


def test_migrations_bring_an_empty_database_to_the_models(empty_url: str) -> None:
    async def scenario() -> None:
        await apply_migrations(empty_url)
        assert await pending_changes(empty_url) == []  # nothing left for makemigrations
        async with opened(empty_url) as conn:
            assert model_tables() <= await table_names(conn)
            await sync_policies(POLICY_DIR)
            await record_decisions("cust-mig")
            before = await conn.execute_query_dict("SELECT id, status, hash FROM consent_events ORDER BY seq")
            assert len(before) == 2
            # Invariant 1 (docs/design.md): the database itself refuses to rewrite or remove ledger events
            statements = ["UPDATE consent_events SET status = 'refused'", "DELETE FROM consent_events"]
            if is_postgres(conn):
                statements.append("TRUNCATE consent_events CASCADE")
            for sql in statements:
                with pytest.raises(OperationalError, match="append-only"):
                    await conn.execute_script(sql)
            after = await conn.execute_query_dict("SELECT id, status, hash FROM consent_events ORDER BY seq")
            assert after == before

    run_sync(scenario())


def test_applying_migrations_twice_is_a_no_op(empty_url: str) -> None:
    async def scenario() -> None:
        await apply_migrations(empty_url)
        async with opened(empty_url) as conn:
            await sync_policies(POLICY_DIR)
            await record_decisions("cust-twice")
            first = await schema_snapshot(conn)
            events = await conn.execute_query_dict("SELECT id, hash FROM consent_events ORDER BY seq")
        await apply_migrations(empty_url)
        async with opened(empty_url) as conn:
            assert await schema_snapshot(conn) == first
            assert await conn.execute_query_dict("SELECT id, hash FROM consent_events ORDER BY seq") == events
            applied = await conn.execute_query_dict("SELECT name FROM tortoise_migrations ORDER BY id")
            assert [r["name"] for r in applied] == sorted(p.stem for p in REPO_MIGRATIONS.glob("0*.py"))
        assert await pending_changes(empty_url) == []

    run_sync(scenario())


def test_events_queued_before_0005_get_their_hash_and_are_sequenced_as_before(empty_url: str, tmp_path: Path) -> None:
    """0005 copies the event hash into log_queue: rows queued without it are filled in, then sequenced normally."""

    async def scenario() -> None:
        await apply_migrations(empty_url)
        async with opened(empty_url) as conn:
            await sync_policies(POLICY_DIR)
            for ref in ("cust-queued-1", "cust-queued-2", "cust-queued-3"):
                await record_decisions(ref)
            events = await conn.execute_query_dict(
                "SELECT e.id, e.hash FROM log_queue q JOIN consent_events e ON e.id = q.event_id ORDER BY q.id"
            )
        assert len(events) == 6
        # back to before 0005: the queue rows lose their hash column, as on a database queued by the old code
        await apply_migrations(empty_url, target="models.0004_service_desk")
        async with opened(empty_url) as conn:
            assert "event_hash" not in await queue_columns(conn)
            assert await conn.execute_query_dict("SELECT event_id FROM log_queue ORDER BY id") == [
                {"event_id": row["id"]} for row in events
            ]
        await apply_migrations(empty_url)
        assert await pending_changes(empty_url) == []
        async with opened(empty_url) as conn:
            queued = await conn.execute_query_dict("SELECT event_id, event_hash FROM log_queue ORDER BY id")
            assert [(str(r["event_id"]), r["event_hash"]) for r in queued] == [
                (str(e["id"]), e["hash"]) for e in events
            ]
            log = TransparencyLog(KeyStore(tmp_path / "keys"), "test-log", lambda: datetime.now(UTC))
            assert await log.sequence() == 6
            entries = await conn.execute_query_dict(LOG_ENTRIES)
            leaves = [bytes.fromhex(e["hash"]) for e in events]
            assert sorted((r["position"], str(r["event_id"]), r["leaf_hash"]) for r in entries) == [
                (i, str(e["id"]), merkle.leaf_hash(leaf).hex())
                for i, (e, leaf) in enumerate(zip(events, leaves, strict=True))
            ]
            assert await log.root(6) == independent.mth(leaves)
            assert await conn.execute_query_dict("SELECT id FROM log_queue") == []

    run_sync(scenario())


def test_0009_dates_the_flags_already_changed_so_the_change_feed_sees_them(empty_url: str) -> None:
    """`subjects.flags_changed_at` is filled for subjects erased, restricted or lifted before 0009: the latest of
    the flags and of the desk's `restriction_lifted` steps; other subjects keep it empty. Going back drops it."""
    day = datetime(2026, 5, 4, 10, tzinfo=UTC)

    async def scenario() -> None:
        await apply_migrations(empty_url, target="models.0008_audience_covering_indexes")
        async with opened(empty_url) as conn:
            await sync_policies(POLICY_DIR)
            for ref in ("erased", "restricted", "both", "lifted", "untouched"):
                await record_decisions(f"cust-{ref}")
            ids = {str(r["ref"]): r["id"] for r in await conn.execute_query_dict("SELECT id, ref FROM subjects")}
            mark = server.db.placeholders(conn, 2)
            for ref, column, at in (
                ("cust-erased", "erased_at", day),
                ("cust-restricted", "restricted_at", day),
                ("cust-both", "restricted_at", day),
                ("cust-both", "erased_at", day + timedelta(days=1)),
            ):
                sql = f"UPDATE subjects SET {column} = {mark[0]} WHERE id = {mark[1]}"
                await conn.execute_query(sql, [at, ids[ref]])
            request = await DataSubjectRequest.create(
                subject_id=ids["cust-lifted"],
                kind="restriction",
                channel="phone",
                received_at=day,
                original_due_on=day.date(),
                due_on=day.date(),
                opened_by="agent",
            )
            for action, at in (("restricted", day), ("restriction_lifted", day + timedelta(days=2))):
                await DsrHistory.create(request_id=request.id, at=at, actor="agent", action=action)
        await apply_migrations(empty_url)
        async with opened(empty_url):
            changed = {s.ref: s.flags_changed_at for s in await Subject.all()}
        assert changed == {
            "cust-erased": day,
            "cust-restricted": day,
            "cust-both": day + timedelta(days=1),
            "cust-lifted": day + timedelta(days=2),
            "cust-untouched": None,
        }
        await apply_migrations(empty_url, target="models.0008_audience_covering_indexes")
        async with opened(empty_url) as conn:
            with pytest.raises(OperationalError):
                await conn.execute_query("SELECT flags_changed_at FROM subjects")
        await apply_migrations(empty_url)
        assert await pending_changes(empty_url) == []

    run_sync(scenario())


def test_0006_keeps_the_log_its_proofs_and_its_keys(empty_url: str, tmp_path: Path) -> None:
    """0006 re-keys log_entries by position, drops two constraints and Merkle levels 1-3: the log's roots and proofs
    stay the same, positions and event ids stay unique, and sequencing continues; going back restores levels 1-3."""

    async def low_levels(conn: BaseDBAsyncClient) -> dict[tuple[int, int], str]:
        rows = await conn.execute_query_dict('SELECT level, "index", hash FROM merkle_nodes WHERE level < 4')
        return {(int(r["level"]), int(r["index"])): r["hash"] for r in rows}

    async def scenario() -> None:
        await apply_migrations(empty_url, target="models.0005_queue_event_hash")
        log = TransparencyLog(KeyStore(tmp_path / "keys"), "test-log", lambda: datetime.now(UTC))
        async with opened(empty_url) as conn:
            await sync_policies(POLICY_DIR)
            for number in range(19):
                await record_decisions(f"cust-0006-{number}")
            assert await log.sequence() == 38
            # the 0005 code also stored levels 1-3: put them in, as such a database has them
            leaves = [
                bytes.fromhex(r["leaf_hash"])
                for r in await conn.execute_query_dict("SELECT leaf_hash FROM log_entries ORDER BY position")
            ]
            expected_low = {
                (level, index): merkle.perfect_subtree_hash(leaves[index << level : (index + 1) << level]).hex()
                for level in (1, 2, 3)
                for index in range(len(leaves) >> level)
            }
            marks = ", ".join(server.db.placeholders(conn, 3))
            await conn.execute_many(
                f'INSERT INTO merkle_nodes (level, "index", hash) VALUES ({marks})',
                [[level, index, value] for (level, index), value in expected_low.items()],
            )
            entries = await conn.execute_query_dict(LOG_ENTRIES)
            root = await log.root(38)
            paths = await log.inclusion(range(38), 38)
            consistency = await log.consistency(13, 38)
            logged = await event_hashes_in_log_order(conn)
        assert root == independent.mth(logged)
        assert paths == {m: independent.path(m, logged) for m in range(38)}
        assert consistency == independent.proof(13, logged)

        await apply_migrations(empty_url)
        assert await pending_changes(empty_url) == []
        async with opened(empty_url) as conn:
            assert await low_levels(conn) == {}
            assert await conn.execute_query_dict(LOG_ENTRIES) == entries
            assert await log.root(38) == root
            assert await log.inclusion(range(38), 38) == paths
            assert await log.consistency(13, 38) == consistency
            marks = ", ".join(server.db.placeholders(conn, 3))
            insert = f"INSERT INTO log_entries (event_id, position, leaf_hash) VALUES ({marks})"
            with pytest.raises(IntegrityError):  # a position is the key
                await conn.execute_query(insert, [str(uuid.uuid4()), 0, "00"])
            with pytest.raises(IntegrityError):  # an event is logged once
                await conn.execute_query(insert, [str(entries[0]["event_id"]), 38, "00"])
            await record_decisions("cust-0006-after")
            assert await log.sequence() == 40
            logged = await event_hashes_in_log_order(conn)
            assert await log.root(40) == independent.mth(logged)
            leaves = [merkle.leaf_hash(data) for data in logged]

        await apply_migrations(empty_url, target="models.0005_queue_event_hash")
        async with opened(empty_url) as conn:
            assert await low_levels(conn) == {
                (level, index): merkle.perfect_subtree_hash(leaves[index << level : (index + 1) << level]).hex()
                for level in (1, 2, 3)
                for index in range(40 >> level)
            }
            assert len(await conn.execute_query_dict("SELECT id FROM log_entries")) == 40

    run_sync(scenario())


async def event_hashes_in_log_order(conn: BaseDBAsyncClient) -> list[bytes]:
    rows = await conn.execute_query_dict(
        "SELECT e.hash FROM log_entries l JOIN consent_events e ON e.id = l.event_id ORDER BY l.position"
    )
    return [bytes.fromhex(r["hash"]) for r in rows]


async def queue_columns(conn: BaseDBAsyncClient) -> set[str]:
    if is_postgres(conn):
        sql = "SELECT column_name AS name FROM information_schema.columns WHERE table_name = 'log_queue'"
    else:
        sql = "SELECT name FROM pragma_table_info('log_queue')"
    return {str(r["name"]) for r in await conn.execute_query_dict(sql)}


# --- SQLite table rebuilds -------------------------------------------------------------------------------------------

MIGRATION_TEMPLATE = '''"""Test-only migration: changes that SQLite can only apply by rebuilding the table."""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("models", "0002_append_only_ledger")]

    operations = [
{operations}    ]
'''

# Length changes: SqliteSchemaEditor._alter_field has no ALTER COLUMN for them, it calls _remake_table (create new
# table, copy rows, drop old table, rename).
REBUILD_SUBJECTS = ["ops.AlterField('Subject', 'phone', fields.CharField(null=True, max_length=40))"]
REBUILD_LEDGER = [
    "ops.AlterField('ConsentEvent', 'actor_id', fields.CharField(null=True, max_length=160))",
    "ops.AlterField('ConsentState', 'status', fields.CharField(max_length=40))",
]


@pytest.fixture
def extra_migration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[list[str]], str]]:
    """Make the app's migrations module a temporary copy of `migrations/` plus a `0003_rebuild.py`."""
    packages: list[str] = []

    def make(operations: list[str]) -> str:
        name = f"rebuild_migrations_{uuid.uuid4().hex[:12]}"
        package = tmp_path / "pkgs" / name
        shutil.copytree(REPO_MIGRATIONS, package, ignore=shutil.ignore_patterns("__pycache__"))
        (package / "0003_rebuild.py").write_text(
            MIGRATION_TEMPLATE.format(operations="".join(f"        {op},\n" for op in operations))
        )
        monkeypatch.syspath_prepend(str(package.parent))
        monkeypatch.setattr(server.db, "MIGRATIONS_MODULE", name)
        packages.append(name)
        return name

    yield make
    for module in [m for m in sys.modules if m.split(".")[0] in packages]:
        del sys.modules[module]


@pytest.fixture
def sqlite_file(sqlite_template: SqliteTemplate) -> tuple[str, Path]:
    """A migrated, policy-synced SQLite database with one subject, its events and state rows."""
    url, _ = sqlite_template.new()
    path = Path(url.removeprefix("sqlite://"))

    async def seed() -> None:
        async with opened(url) as conn:
            await record_decisions("cust-rebuild")
            await record_decisions("cust-other")
            await conn.execute_query("UPDATE subjects SET phone = '+33600000001' WHERE ref = 'cust-rebuild'")

    run_sync(seed())
    return url, path


def inspect(path: Path) -> dict[str, Any]:
    """Rows, indexes (columns and uniqueness), triggers and table SQL, read with the stdlib driver."""
    db = sqlite3.connect(path)
    try:
        indexes: dict[str, set[tuple[tuple[str, ...], bool]]] = {}
        named: set[str] = set()  # the indexes the models name (the SQLite readers use them: INDEXED BY)
        for table in LEDGER_TABLES:
            found = set()
            for _, name, unique, *_rest in db.execute(f'PRAGMA index_list("{table}")').fetchall():
                columns = tuple(r[2] for r in db.execute(f'PRAGMA index_info("{name}")').fetchall())
                found.add((columns, bool(unique)))
                if not name.startswith(("sqlite_autoindex_", "idx_", "uniq_")):
                    named.add(name)
            indexes[table] = found
        return {
            "subjects": db.execute("SELECT id, ref, pseudonym, phone, last_seq, head_hash FROM subjects").fetchall(),
            "events": db.execute(
                "SELECT id, subject_id, seq, actor_id, hash FROM consent_events ORDER BY hash"
            ).fetchall(),
            "states": db.execute("SELECT id, subject_id, event_id, status FROM consent_states ORDER BY id").fetchall(),
            "indexes": indexes,
            "named_indexes": named,
            "triggers": {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")},
            "fk_check": db.execute("PRAGMA foreign_key_check").fetchall(),
            "sql": dict(db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'").fetchall()),
            "applied": [r[0] for r in db.execute("SELECT name FROM tortoise_migrations ORDER BY id")],
        }
    finally:
        db.close()


def assert_refuses_update_and_delete(path: Path) -> None:
    db = sqlite3.connect(path)
    try:
        for sql in ("UPDATE consent_events SET status = 'refused'", "DELETE FROM consent_events"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                db.execute(sql)
    finally:
        db.close()


def test_sqlite_rebuild_of_a_parent_table_keeps_child_rows_and_indexes(
    sqlite_file: tuple[str, Path], extra_migration: Callable[[list[str]], str]
) -> None:
    url, path = sqlite_file
    before = inspect(path)
    assert len(before["events"]) == 4 and len(before["states"]) == 4
    extra_migration(REBUILD_SUBJECTS)

    run_sync(apply_migrations(url))  # the real entry point, with its foreign-key and index safety rails

    after = inspect(path)
    assert after["applied"] == [*before["applied"], "0003_rebuild"]
    assert '"phone" VARCHAR(40)' in after["sql"]["subjects"]  # the table really was rebuilt
    assert after["subjects"] == before["subjects"]
    assert after["events"] == before["events"]
    assert after["states"] == before["states"]
    assert after["fk_check"] == []
    assert after["indexes"] == before["indexes"]
    assert after["named_indexes"] == before["named_indexes"] >= {"subjects_check_by_ref", "subjects_flags_changed"}
    assert after["triggers"] >= {"consent_events_no_update", "consent_events_no_delete"}
    assert_refuses_update_and_delete(path)


def test_sqlite_named_index_left_under_a_generated_name_is_restored_by_name(sqlite_file: tuple[str, Path]) -> None:
    """Before 2026-11-30 the restore after a rebuild gave a named index a generated name (same columns), which the
    readers' INDEXED BY cannot find: migrating again creates it under its own name."""
    url, path = sqlite_file
    db = sqlite3.connect(path)
    try:
        db.execute("DROP INDEX subjects_check_by_ref")
        db.execute(
            'CREATE INDEX "idx_subjects_ref_id_erased_at_restricted_at" ON subjects (ref, id, erased_at, restricted_at)'
        )
        db.commit()
    finally:
        db.close()
    assert "subjects_check_by_ref" not in inspect(path)["named_indexes"]

    run_sync(apply_migrations(url))

    assert "subjects_check_by_ref" in inspect(path)["named_indexes"]


def test_sqlite_rebuild_with_foreign_keys_on_is_the_hazard_the_safety_rails_avoid(
    sqlite_file: tuple[str, Path], extra_migration: Callable[[list[str]], str]
) -> None:
    """Plain Tortoise `migrate` with the app's normal connection (foreign_keys=ON) runs the same rebuild.

    DROP TABLE on the old `subjects` performs an implicit DELETE FROM. With Tortoise 1.1 and these ON DELETE RESTRICT
    foreign keys that delete is refused, so the migration fails (and, being atomic, is rolled back) instead of
    silently losing child rows; with ON DELETE CASCADE the events and states would be deleted with their subject.
    """
    url, path = sqlite_file
    before = inspect(path)
    extra_migration(REBUILD_SUBJECTS)
    config = tortoise_config(url)  # not migrating=True: foreign keys stay on
    assert config["connections"]["default"]["credentials"]["foreign_keys"] == "ON"
    assert config["apps"]["models"]["migrations"] == server.db.MIGRATIONS_MODULE

    async def plain_migrate() -> None:
        async with TortoiseContext() as ctx:
            await ctx.init(config=config)
            await migrate_api(config=config)

    with pytest.raises(IntegrityError, match="FOREIGN KEY constraint failed"):
        run_sync(plain_migrate())

    after = inspect(path)
    assert after["applied"] == before["applied"]  # 0003 not recorded
    assert '"phone" VARCHAR(32)' in after["sql"]["subjects"]
    assert (after["subjects"], after["events"], after["states"]) == (
        before["subjects"],
        before["events"],
        before["states"],
    )


def test_sqlite_rebuild_of_the_ledger_tables_keeps_triggers_and_unique_constraints(
    sqlite_file: tuple[str, Path], extra_migration: Callable[[list[str]], str]
) -> None:
    """Rebuilding consent_events drops its triggers and indexes with the old table; migrate must bring them back."""
    url, path = sqlite_file
    before = inspect(path)
    assert (("subject_id", "seq"), True) in before["indexes"]["consent_events"]
    assert (("subject_id", "purpose_id", "channel_id"), True) in before["indexes"]["consent_states"]
    extra_migration(REBUILD_LEDGER)

    run_sync(apply_migrations(url))

    after = inspect(path)
    assert after["applied"] == [*before["applied"], "0003_rebuild"]
    assert '"actor_id" VARCHAR(160)' in after["sql"]["consent_events"]
    assert '"status" VARCHAR(40)' in after["sql"]["consent_states"]
    assert (after["subjects"], after["events"], after["states"]) == (
        before["subjects"],
        before["events"],
        before["states"],
    )
    assert after["fk_check"] == []
    assert after["triggers"] >= {"consent_events_no_update", "consent_events_no_delete"}
    assert_refuses_update_and_delete(path)
    # the per-subject sequence must stay unique (the hash chain relies on it), and so must the state projection key
    assert after["indexes"] == before["indexes"]
    columns = (
        "subject_id, seq, purpose_id, channel_id, action, status, policy_version_id, touchpoint, method, actor_type, "
        "evidence, recorded_at, prev_hash"
    )
    db = sqlite3.connect(path)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            db.execute(
                f"INSERT INTO consent_events (id, hash, {columns}) "
                f"SELECT 'second-event-same-seq', 'another-hash', {columns} FROM consent_events LIMIT 1"
            )
    finally:
        db.rollback()
        db.close()


def test_the_server_refuses_to_start_on_a_database_missing_a_migration(empty_url: str, tmp_path: Path) -> None:
    """New code on a database not yet migrated would read a schema it does not find (PostgreSQL's check reads the
    read model of 0014): the server says which migrations are missing and the command that applies them, and does not
    start. Once migrated, it starts."""
    run_sync(apply_migrations(empty_url, target="models.0013_subject_indexes"))
    settings = app_settings(empty_url, tmp_path / "keys")
    missing = r"has not applied 0014_check_read_model(, \w+)*: run `python -m server migrate`"  # and any later one
    with pytest.raises(MigrationError, match=missing), TestClient(create_app(settings)):
        pass
    run_sync(apply_migrations(empty_url))
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").status_code == 200


@pytest.mark.parametrize("backend", ["postgres"])  # the read model is PostgreSQL's
def test_0014_fills_the_read_model_of_decisions_recorded_before_it(empty_url: str) -> None:
    """Decisions recorded at 0013 are in every subject's `check_states` after 0014, as the triggers would have
    written them; back to 0013 drops the column, and forward again fills it again."""

    async def scenario() -> None:
        await apply_migrations(empty_url, target="models.0013_subject_indexes")
        async with opened(empty_url) as conn:
            await sync_policies(POLICY_DIR)
            await record_decisions("cust-0014")
        for _ in range(2):
            await apply_migrations(empty_url)
            async with opened(empty_url) as conn:
                rows = await conn.execute_query_dict(
                    "SELECT ref, check_states, check_states IS NOT DISTINCT FROM consent_check_states(id) AS fresh "
                    "FROM subjects"
                )
                assert [(r["ref"], r["fresh"]) for r in rows] == [("cust-0014", True)]
                states = orjson.loads(rows[0]["check_states"])
                assert sorted(states) == sorted(
                    f"{r['purpose_id']}\x1f{r['channel_id']}"
                    for r in await conn.execute_query_dict("SELECT purpose_id, channel_id FROM consent_states")
                )
            await apply_migrations(empty_url, target="models.0013_subject_indexes")
            async with opened(empty_url) as conn:
                columns = await conn.execute_query_dict(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = 'subjects'"
                )
                assert "check_states" not in {c["column_name"] for c in columns}

    run_sync(scenario())


def test_a_command_refuses_a_database_missing_a_migration(empty_url: str, tmp_path: Path) -> None:
    """`ledger verify` (any verb that reads or writes the database) exits 3, naming what is missing, instead of
    failing on a table or column it does not find; once migrated, it runs."""
    run_sync(apply_migrations(empty_url, target="models.0012_breaches"))
    settings = app_settings(empty_url, tmp_path / "keys")
    refused = verify(settings, tmp_path)
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "has not applied 0013_subject_indexes, 0014_check_read_model" in refused.stderr
    run_sync(apply_migrations(empty_url))
    verified = verify(settings, tmp_path)
    assert verified.returncode == 0, verified.stdout + verified.stderr
