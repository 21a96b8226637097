"""`python -m server backup PATH`: a consistent copy of the database, taken while the server writes.

SQLite: the online backup API (`sqlite3.Connection.backup`) in one step, so the copy is the database as one read
transaction saw it (in WAL mode the server's writers go on meanwhile); written 0600 under a temporary name, checked
with `PRAGMA quick_check`, flushed, then renamed to PATH. The copy is a plain database file (rollback journal):
restoring is copying it to the DATABASE_URL path while the server is stopped.

PostgreSQL: `pg_dump --format=custom` (one snapshot, consistent while the server writes), run when `pg_dump` is on
PATH, into a file created 0600; restored with `pg_restore` (docs/operations.md, "Backups and restore"). Without
`pg_dump` the command prints that recipe and exits 2.

PATH must not exist: a backup never overwrites another.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from server.db import sqlite_path
from server.files import create_private, private_dir
from server.settings import Settings
from server.verbs import Verb

BUSY_TIMEOUT_S = 10
PG_RECIPE = """\
pg_dump --format=custom --no-password --file=BACKUP.dump --host=HOST --port=PORT --username=USER DBNAME
  (PGPASSWORD in the environment; the file holds personal data: create it 0600, e.g. with umask 077)
restore into a new, empty database, then check it:
  createdb NEWDB && pg_restore --no-owner --dbname=NEWDB BACKUP.dump
  DATABASE_URL=postgres://USER@HOST:PORT/NEWDB python -m server ledger verify"""


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", type=Path, help="the backup file to write (must not exist)")


def backup(settings: Settings, args: argparse.Namespace) -> int:
    target: Path = args.path
    if target.exists():
        print(f"backup: {target} exists; a backup never overwrites a file", file=sys.stderr)
        return 2
    database = sqlite_path(settings.database_url)
    if database is None:
        return _pg_dump(settings.database_url, target)
    if not database.is_file():
        print(f"backup: no database at {database}", file=sys.stderr)
        return 2
    private_dir(target.parent)
    partial = target.with_name(f".{target.name}.partial")
    os.close(create_private(partial))
    try:
        pages = sqlite_backup(database, partial)
        _durable_rename(partial, target)
    except (sqlite3.Error, OSError) as exc:
        partial.unlink(missing_ok=True)
        print(f"backup: failed ({type(exc).__name__}: {exc}); nothing was written", file=sys.stderr)
        return 1
    print(f"backup: {target} ({pages} pages, {target.stat().st_size} bytes): SQLite online backup, quick_check ok")
    return 0


def sqlite_backup(database: Path, destination: Path) -> int:
    """Copy `database` into `destination` (an empty file) with the online backup API, in one step; returns the
    number of pages. Raises sqlite3.DatabaseError when the copy does not pass `quick_check`."""
    with (
        closing(sqlite3.connect(database, timeout=BUSY_TIMEOUT_S)) as source,
        closing(sqlite3.connect(destination)) as copy,
    ):
        source.backup(copy)  # pages=-1: every page under one read transaction, a consistent snapshot
        copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal to carry along
        verdict = copy.execute("PRAGMA quick_check").fetchone()[0]
        if verdict != "ok":
            raise sqlite3.DatabaseError(f"the copy does not pass quick_check: {verdict}")
        pages = int(copy.execute("PRAGMA page_count").fetchone()[0])
    return pages


def _durable_rename(partial: Path, target: Path) -> None:
    with open(partial, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(partial, target)
    folder = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def _pg_dump(database_url: str, target: Path) -> int:
    """Run pg_dump when it is installed; otherwise print the recipe."""
    program = shutil.which("pg_dump")
    if program is None:
        print(f"backup: pg_dump is not on PATH. On PostgreSQL, back up with:\n{PG_RECIPE}", file=sys.stderr)
        return 2
    parts = urlsplit(database_url)
    query = dict(parse_qsl(parts.query))
    command = [
        program,
        "--format=custom",
        "--no-password",
        f"--host={parts.hostname or '127.0.0.1'}",
        f"--port={parts.port or 5432}",
        f"--username={unquote(parts.username or 'postgres')}",
        *([f"--schema={query['schema']}"] if "schema" in query else []),
    ]
    # The password goes by the environment, never on the command line (which other accounts can read in ps).
    env = {**os.environ, "PGPASSWORD": unquote(parts.password or "")}
    private_dir(target.parent)
    partial = target.with_name(f".{target.name}.partial")
    os.close(create_private(partial))  # pg_dump writes into it, keeping its 0600
    database = parts.path.lstrip("/") or "postgres"
    # No shell, and every value as --name=value: nothing in DATABASE_URL can become another option.
    arguments = [*command, f"--file={partial}", f"--dbname={database}"]
    done = subprocess.run(arguments, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        print(f"backup: pg_dump failed ({done.returncode}): {done.stderr.strip()}", file=sys.stderr)
        return 1
    _durable_rename(partial, target)
    print(f"backup: {target} ({target.stat().st_size} bytes): pg_dump --format=custom; restore with pg_restore")
    return 0


VERBS = [
    Verb(
        ("backup",),
        "write a consistent copy of the database to PATH (SQLite online backup, or pg_dump), 0600",
        run=backup,
        arguments=_arguments,
    )
]
