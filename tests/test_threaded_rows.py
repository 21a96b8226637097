"""SQLite rows read by worker threads (`server.consent.threaded_rows`): every row once, errors raised to the
reader, threads gone when the reader stops early."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from server.consent.reader import SqliteStateReader

ROWS = 10_007


def _database(tmp_path: Path) -> SqliteStateReader:
    path = tmp_path / "rows.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE subjects (ref TEXT NOT NULL)")
        conn.executemany("INSERT INTO subjects (ref) VALUES (?)", [(f"r{i}",) for i in range(ROWS)])
    return SqliteStateReader(str(path))


async def _collect(reader: SqliteStateReader, queries: list[tuple[str, list[Any]]]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    async for rows in reader.stream(queries, 500):
        out.extend(rows)
    return out


def _rows_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "sqlite-rows" and t.is_alive()]


def test_ranges_read_in_parallel_give_every_row_once(tmp_path: Path) -> None:
    reader = _database(tmp_path)
    ranges = reader.rowid_ranges("subjects", 3)
    assert len(ranges) == 3 and ranges[0][0] == 1 and ranges[-1][1] == ROWS
    queries = [("SELECT ref FROM subjects WHERE rowid BETWEEN ?1 AND ?2", [low, high]) for low, high in ranges]
    rows = asyncio.run(_collect(reader, queries))
    assert sorted(r[0] for r in rows) == sorted(f"r{i}" for i in range(ROWS))
    asyncio.run(reader.close())


def test_an_error_in_a_worker_is_raised_to_the_reader(tmp_path: Path) -> None:
    reader = _database(tmp_path)
    with pytest.raises(sqlite3.OperationalError, match="no such column"):
        asyncio.run(_collect(reader, [("SELECT nope FROM subjects", [])]))
    asyncio.run(reader.close())


def test_stopping_early_ends_the_worker_threads(tmp_path: Path) -> None:
    reader = _database(tmp_path)

    async def first_chunk_only() -> int:
        rows = reader.stream([("SELECT ref FROM subjects", []), ("SELECT ref FROM subjects", [])], 100)
        async for chunk in rows:
            await rows.aclose()  # type: ignore[attr-defined]
            return len(chunk)
        return 0

    assert asyncio.run(first_chunk_only()) == 100
    deadline = time.monotonic() + 5
    while _rows_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _rows_threads()
    asyncio.run(reader.close())


def test_an_empty_table_is_one_empty_range(tmp_path: Path) -> None:
    path = tmp_path / "empty.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE subjects (ref TEXT)")
    reader = SqliteStateReader(str(path))
    assert reader.rowid_ranges("subjects", 4) == [(0, 0)]
    asyncio.run(reader.close())
