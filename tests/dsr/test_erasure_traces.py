"""What an erasure leaves behind: every address the person ever had on the suppression list (not only the last one),
and, on SQLite, no copy of the erased values in the database file's free pages or in its write-ahead log."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from server.db import sqlite_path
from server.models import FormerContact, Suppression
from server.settings import Settings
from server.subjects.contact import is_suppressed, normalise_email
from tests.helpers.app import run, services_of
from tests.helpers.console import count, new_staff, open_via_console, post, record_api, sign_in
from tests.helpers.sql import sql


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    return settings.with_overrides(mail_dir=tmp_path / "mail")


def _set_email(client: TestClient, auth: dict[str, str], ref: str, email: str) -> None:
    """The company sets the address through the API, as its own systems do."""
    answer = client.post(f"/v1/subjects/{ref}/preference-links", json={"email": email}, headers=auth)
    assert answer.status_code == 200, answer.text


def _erase(client: TestClient, ref: str) -> None:
    supervisor = new_staff(client, "supervisor")
    csrf = sign_in(client, email=supervisor.email)
    request_id = open_via_console(client, csrf, ref, "erasure")
    answer = post(client, csrf, f"/console/requests/{request_id}/fulfil", {"confirm": "yes"})
    assert answer.status_code == 303, answer.text


def _bytes(path: Path) -> bytes:
    """The file's bytes, read by another process: closing a descriptor on the database file in this one would drop
    the POSIX locks SQLite holds on it for the app's connection."""
    read = "import sys; sys.stdout.buffer.write(open(sys.argv[1], 'rb').read())"
    return subprocess.run([sys.executable, "-c", read, str(path)], capture_output=True, check=True).stdout


def _suppressed(client: TestClient, email: str) -> bool:
    secret = services_of(client).settings.secret_key
    return bool(run(client, lambda: is_suppressed(secret, email=normalise_email(email))))


def test_every_address_the_person_ever_had_is_suppressed_at_erasure(client: TestClient, auth: dict[str, str]) -> None:
    record_api(client, auth, "moving", [("offers", "email", "grant")])
    _set_email(client, auth, "moving", "first@old.example")
    _set_email(client, auth, "moving", "second@old.example")
    _set_email(client, auth, "moving", "second@old.example")  # unchanged: nothing more kept
    supervisor = new_staff(client, "supervisor")
    csrf = sign_in(client, email=supervisor.email)
    rectification = open_via_console(client, csrf, "moving", "rectification")
    fixed = post(client, csrf, f"/console/requests/{rectification}/fulfil", {"email": "third@new.example"})
    assert fixed.status_code == 303, fixed.text
    assert count(client, FormerContact, subject__ref="moving") == 2
    # Another person's address is not on the list because "moving" had it once.
    assert not _suppressed(client, "first@old.example")

    _erase(client, "moving")

    for address in ("first@old.example", "second@old.example", "third@new.example"):
        assert _suppressed(client, address), address
    assert count(client, Suppression) == 3
    # The hashes are no longer linked to the subject: the list says only "never contact", not whose they were.
    assert count(client, FormerContact) == 0
    # None of them can be set on anyone again, through the API either.
    record_api(client, auth, "newcomer", [("offers", "email", "grant")])
    refused = client.post("/v1/subjects/newcomer/preference-links", json={"email": "First@Old.example"}, headers=auth)
    assert refused.status_code == 422 and refused.json()["type"] == "/problems/suppressed-contact", refused.text


@pytest.mark.parametrize("backend", ["sqlite"])
def test_an_erased_address_is_in_no_sqlite_file_after_the_erasure(
    client: TestClient, auth: dict[str, str], settings: Settings
) -> None:
    """secure_delete zeroes what the erasure blanked in the database file; the WAL, which held page images with
    the address, is checkpointed and truncated."""
    marker = "zq7erasable.marker"
    email = f"{marker}@example.org"
    record_api(client, auth, "leaving", [("offers", "email", "grant")])
    _set_email(client, auth, "leaving", email)
    database = sqlite_path(settings.database_url)
    assert database is not None
    wal = database.with_name(database.name + "-wal")

    async def checkpoint_without_truncating() -> None:
        from tortoise import connections

        await connections.get("default").execute_query("PRAGMA wal_checkpoint(PASSIVE)")

    run(client, checkpoint_without_truncating)
    # Before the erasure the address is in both: copied into the database file, still in the log's old frames.
    assert marker.encode() in _bytes(database)
    assert marker.encode() in _bytes(wal)

    _erase(client, "leaving")

    assert marker.encode() not in _bytes(database)
    assert marker.encode() not in _bytes(wal)


def _row_versions_with(database_url: str, table: str, marker: str) -> int:
    """Heap tuples of `table`, live or dead, whose data hold `marker` (pageinspect reads the pages as stored)."""
    (row,) = sql(
        database_url,
        "CREATE EXTENSION IF NOT EXISTS pageinspect",
        "CHECKPOINT",
        query="SELECT count(*) FROM generate_series(0, "
        f"pg_relation_size('{table}') / current_setting('block_size')::int - 1) AS block, "
        f"heap_page_items(get_raw_page('{table}', block::int)) AS item "
        f"WHERE position(convert_to('{marker}', 'UTF8') IN item.t_data) > 0",
    )
    return int(row[0])


@pytest.mark.parametrize("backend", ["postgres"])
def test_no_row_version_holds_an_erased_address_on_postgres_after_the_erasure(
    client: TestClient, auth: dict[str, str], database_url: str
) -> None:
    """The erasure VACUUMs what it changed once it has committed: the dead row versions that held the address (each
    update leaves one) are pruned instead of waiting for autovacuum, which may take minutes or, on a quiet table,
    much longer."""
    marker = "zq7vacuumed.marker"
    record_api(client, auth, "vacuumed", [("offers", "email", "grant")])
    _set_email(client, auth, "vacuumed", f"{marker}@example.org")
    _set_email(client, auth, "vacuumed", f"{marker}@example.net")  # a second, replaced, version
    assert _row_versions_with(database_url, "subjects", marker) >= 2

    _erase(client, "vacuumed")

    assert _row_versions_with(database_url, "subjects", marker) == 0
