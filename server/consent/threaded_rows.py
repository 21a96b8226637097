"""Rows of SQLite queries read by worker threads, handed to the event loop in chunks.

SQLite releases the GIL while it steps a query, so a long read (an audience export) split into a few queries over
disjoint ranges runs on several cores at once, and the event loop stays free for other requests meanwhile (a
synchronous `fetchmany` of 5,000 rows held it for tens of milliseconds). Memory stays bounded: each thread may be at
most `AHEAD` chunks ahead of the consumer.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

AHEAD = 2
_DONE = object()


async def threaded_rows(
    connect: Callable[[], sqlite3.Connection],
    release: Callable[[sqlite3.Connection], None],
    queries: Sequence[tuple[str, Sequence[Any]]],
    chunk: int,
) -> AsyncIterator[list[tuple[Any, ...]]]:
    """Chunks of rows of every query, in no particular order across queries (in order within each)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    stopped = threading.Event()
    slots = threading.Semaphore(AHEAD * len(queries))

    def post(item: Any) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            stopped.set()

    def produce(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> None:
        try:
            cursor = conn.execute(sql, list(params))
            try:
                while not stopped.is_set():
                    rows = cursor.fetchmany(chunk)
                    if not rows:
                        break
                    while not slots.acquire(timeout=0.5):
                        if stopped.is_set():
                            return
                    post(rows)
            finally:
                cursor.close()
        except Exception as exc:  # handed to the consumer, which raises it
            post(exc)
        finally:
            release(conn)
            post(_DONE)

    threads = [
        threading.Thread(target=produce, args=(connect(), sql, params), daemon=True, name="sqlite-rows")
        for sql, params in queries
    ]
    for thread in threads:
        thread.start()
    running = len(threads)
    try:
        while running:
            item = await queue.get()
            if item is _DONE:
                running -= 1
            elif isinstance(item, Exception):
                raise item
            else:
                slots.release()
                yield item
    finally:
        stopped.set()
