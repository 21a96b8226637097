"""Stream checks answered in worker processes, so that no GIL is shared with the event loop.

A stream's work per check is Python (parse and validate the line, write the answer line) around a database read.
In one process that Python all runs on the event loop, one core at most:
- on SQLite the event loop and the bulk-read threads take turns holding the GIL, and with the reads mapped (mmap) the
  event loop is the limit;
- on PostgreSQL the event loop and the database take turns, waiting on each other, and the cores are not all busy
  (bench/README.md, "Stream worker processes", for both).
Here the event loop only cuts the body into chunks of lines; each chunk goes whole to one of `workers` processes,
which parses it, reads its keys on its own connection and writes its answer lines. The event loop sends back what
comes out, in order.

- Same answers: a worker runs the same `BulkRule` (`parse`, `lines`) and `stream_body` as the in-process path, for
  the catalog snapshot and the instant the event loop gives it (each chunk is decided at its own `now`, as in
  process). The catalog goes pickled, and each worker keeps the last one it unpickled.
- Same reads: on SQLite, a read-only connection of its own, mapped as the bulk threads' are (`sqlite_rows`); on
  PostgreSQL, one connection of its own with the reader's query (`postgres_rows`), driven by a private event loop.
  Each read is its own read transaction, at the time of the chunk, as in process; nothing is cached.
- Started with the server (`spawn`: a fork of a process running an event loop and threads is not safe), so their
  memory is counted from the start and the first stream does not wait. A worker that dies breaks the pool: the
  chunks it held are answered in process, and so is everything until a new pool starts (`RESTART_AFTER_S`). A read
  that fails in a worker (its PostgreSQL connection lost twice in a row, say) costs no answer either: that chunk is
  answered in process.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import multiprocessing
import os
import pickle
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime
from typing import Any, NamedTuple

from server.consent.bulk import BulkRule, numbered_keys, stream_body
from server.consent.reader import BULK_CACHE_KIB, Key, Row, postgres_rows, read_only_connection, sqlite_rows
from server.errors import ConsentError
from server.policies.snapshot import CatalogSnapshot

log = logging.getLogger("server.consent.stream_workers")

RESTART_AFTER_S = 30.0
SERVER_POLL_S = 1.0  # how often a worker looks whether its server is still there
APPLICATION_NAME = "consent-stream-worker"  # a PostgreSQL worker's connection, as `pg_stat_activity` shows it

# A chunk: (number of its first line, the lines joined by newlines or None for one over-long line, line count).
Segment = tuple[int, bytes | None, int]


class SqliteSource(NamedTuple):
    """What a worker reads: the SQLite file at `path`, `mmap_mb` of it mapped (`SQLITE_BULK_MMAP_MB`)."""

    path: str
    mmap_mb: int


class PostgresSource(NamedTuple):
    """What a worker reads: the PostgreSQL database at `dsn`, with `search_path` (`?schema=`) when not None."""

    dsn: str
    search_path: str | None


class WorkerReadError(Exception):
    """A worker could not read a chunk's keys (its message says why); the server answers that chunk itself."""


# --- in the worker --------------------------------------------------------------------------------------------

_read: Callable[[Sequence[Key]], list[Row | None]] | None = None
_catalog: tuple[int, CatalogSnapshot] | None = None


def _start_worker(source: SqliteSource | PostgresSource, server_pid: int) -> None:
    global _read
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server's Ctrl-C stops the server, which stops its workers
    threading.Thread(target=_end_with, args=(server_pid,), name="end-with-server", daemon=True).start()
    if isinstance(source, PostgresSource):
        _read = _PostgresRows(source)
    else:
        connection = read_only_connection(source.path, BULK_CACHE_KIB, source.mmap_mb)
        _read = lambda keys: sqlite_rows(connection, keys)  # noqa: E731


class _PostgresRows:
    """A worker's PostgreSQL reads: one connection of its own, driven by a private event loop (the worker has
    nothing else to do while PostgreSQL reads). A connection found lost (PostgreSQL restarted, the backend ended
    by an operator) is opened again and the read tried once more: a read changes nothing."""

    def __init__(self, source: PostgresSource) -> None:
        import asyncpg  # here: a SQLite worker never loads it (~14 MB)

        settings = {"application_name": APPLICATION_NAME}
        if source.search_path:
            settings["search_path"] = source.search_path
        loop = self._loop = asyncio.new_event_loop()
        self._open = lambda: loop.run_until_complete(asyncpg.connect(source.dsn, server_settings=settings))
        self._connection: Any = self._open()

    def __call__(self, keys: Sequence[Key]) -> list[Row | None]:
        if self._connection.is_closed():
            self._connection = self._open()
        try:
            return self._loop.run_until_complete(postgres_rows(self._connection, keys))
        except Exception:
            if not self._connection.is_closed():
                raise
        self._connection = self._open()  # lost while idle: PostgreSQL restarted, or the backend was ended
        return self._loop.run_until_complete(postgres_rows(self._connection, keys))


def _end_with(server_pid: int) -> None:
    """End this worker once the server that started it is gone, however it went. A server killed by SIGKILL runs
    no shutdown, and the job queue would never tell its workers: every worker holds the queue's writing end too,
    so none sees an end of file. tests/consent/test_stream_workers.py kills a server with SIGKILL and waits for its
    workers to end."""
    while os.getppid() == server_pid:
        time.sleep(SERVER_POLL_S)
    os._exit(0)


def _ready() -> int:
    return os.getpid()


def _answer_chunk(catalog_id: int, catalog_blob: bytes, now: datetime, segments: list[Segment]) -> bytes:
    """The response body of one chunk of stream lines (what the in-process path writes for them)."""
    global _catalog
    if _catalog is None or _catalog[0] != catalog_id:
        # The blob comes from the server process that started this one (as every argument of a pool job does).
        _catalog = (catalog_id, pickle.loads(catalog_blob))  # noqa: S301
    assert _read is not None
    rule = BulkRule(_catalog[1], now)
    numbers: list[int] = []
    items: list[Key | ConsentError] = []
    for first, block, count in segments:
        rule.parse(first, block, count, numbers, items)
    keys, key_numbers = numbered_keys(numbers, items)
    try:
        rows = _read(keys)
    except Exception as exc:  # whatever the driver raises, and whether or not it pickles: the server logs it
        raise WorkerReadError(f"{type(exc).__name__}: {exc}") from None
    return stream_body(rule.lines(keys, rows, key_numbers), numbers, items)


# --- in the server --------------------------------------------------------------------------------------------

PIPE_BYTES = 1 << 20  # Linux's default /proc/sys/fs/pipe-max-size


def _widen_pipes(pool: ProcessPoolExecutor) -> None:
    """Give the pool's two pipes (chunks out, answers back) PIPE_BYTES of buffer instead of Linux's 64 KiB.

    A chunk's answers are ~250 KB. Through a 64 KiB pipe a worker writes them in four or more parts, each waiting
    for the server's result thread to read the last, and that thread needs the GIL, which the event loop holds for
    up to 5 ms at a time, so the workers wait in that write (or on the queue's lock, behind another worker's
    write). Pipes of 1 MiB give some 5-8 % more checks a second (bench/README.md, "Pipes of 1 MiB to and from the
    workers").
    The pipes are the executor's own (private attributes of CPython's `ProcessPoolExecutor`); where they are not
    found, or the system refuses the size, they keep their default."""
    setpipe = getattr(fcntl, "F_SETPIPE_SZ", None)  # Linux only
    queues = (getattr(pool, "_call_queue", None), getattr(pool, "_result_queue", None))
    readers: list[Any] = [getattr(queue, "_reader", None) for queue in queues]
    if setpipe is None or None in readers:
        return
    for reader in readers:
        try:
            fcntl.fcntl(reader.fileno(), setpipe, PIPE_BYTES)
        except (OSError, AttributeError, ValueError) as exc:
            log.debug("stream worker pipe left at its default size (%s)", exc)


class StreamWorkers:
    """A pool of `workers` processes answering stream chunks from `source` (see module docstring)."""

    def __init__(self, source: SqliteSource | PostgresSource, workers: int) -> None:
        self.source = source
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._catalog: tuple[CatalogSnapshot, int, bytes] | None = None  # the snapshot, its id here, pickled
        self._catalogs = 0
        self._restart_at = 0.0  # monotonic instant before which a broken pool is not replaced
        self.chunks_answered = 0  # by the workers, since the server started
        self._closed = False

    def start(self) -> None:
        """Start the processes now (they load in the background): each takes a first no-op job. A machine that
        cannot start them (process or memory limits) still serves: streams are answered in process, and a new
        pool is tried after RESTART_AFTER_S."""
        try:
            pool = self._pool_now()
            for _ in range(self.workers):
                pool.submit(_ready)
        except (OSError, RuntimeError) as exc:
            log.warning("stream worker processes could not start (%s); streams are answered in process", exc)
            self._drop(self._pool)

    def _drop(self, pool: ProcessPoolExecutor | None) -> None:
        """Forget a pool that failed; the next one is tried after RESTART_AFTER_S."""
        if pool is not None and self._pool is pool:
            self._pool = None
            self._restart_at = time.monotonic() + RESTART_AFTER_S
            pool.shutdown(wait=False, cancel_futures=True)

    def _pool_now(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                initargs=(self.source, os.getpid()),
            )
            _widen_pipes(self._pool)
        return self._pool

    async def answer(self, catalog: CatalogSnapshot, now: datetime, segments: list[Segment]) -> bytes | None:
        """The response body of one chunk, answered in a worker; None when no worker can (one died, breaking the
        pool): the caller then answers the chunk itself. A new pool is started RESTART_AFTER_S after a break, so
        that a worker dying on every chunk does not cost a pool start per chunk."""
        if self._closed or (self._pool is None and time.monotonic() < self._restart_at):
            return None
        if self._catalog is None or self._catalog[0] is not catalog:
            self._catalogs += 1
            self._catalog = (catalog, self._catalogs, pickle.dumps(catalog, pickle.HIGHEST_PROTOCOL))
        _, catalog_id, blob = self._catalog
        pool = self._pool_now()
        try:
            future: Future[bytes] = pool.submit(_answer_chunk, catalog_id, blob, now, segments)
            body = await asyncio.wrap_future(future)
        except WorkerReadError as exc:
            log.warning("a stream worker could not read a chunk (%s); that chunk is answered in process", exc)
            return None
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self._closed and not (task and task.cancelling()):  # the job, cancelled by `close`, not this task
                return None
            raise
        except (RuntimeError, OSError) as exc:
            # BrokenProcessPool (a worker died), OSError (a new worker could not start), or a submit after `close`
            # (a stream outliving the server's shutdown).
            if self._closed:
                return None
            if not isinstance(exc, BrokenProcessPool | OSError):
                raise
            if self._pool is pool:  # the first chunk to find it broken drops it
                log.warning("stream worker processes failed (%s); streams are answered in process for now", exc)
                self._drop(pool)
            return None
        self.chunks_answered += 1
        return body

    def pids(self) -> list[int]:
        """The worker processes' ids (those started so far)."""
        pool = self._pool
        processes = getattr(pool, "_processes", None) or {}
        return sorted(processes)

    def close(self) -> None:
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
