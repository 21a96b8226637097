"""Background jobs run by one server process at a time, elected through lease rows in the database.

The service's periodic work (signing checkpoints, delivering recipient notices, mailing request reminders) is
declared as named jobs. Every server process runs an `Elector` over the same jobs; each job has a row in `leases`
(`server.models.leases`), and the process whose lease on a job has not expired is the one that runs it.

Each round (every third of `ttl_s`) is one conditional UPDATE: it renews the leases this process holds and takes
those whose expiry has passed, and answers which rows it now holds. Expiry is computed by the database's clock, the
one clock every process shares, so hosts whose clocks drift apart still agree on who holds a lease. The process
starts a job when it gains its lease and cancels it when a round shows the lease gone, or when it has not renewed
the lease before the expiry it last wrote (measured on its own monotonic clock from the moment the renewal was
sent): it stops before another process may start. A clean shutdown gives the leases back, so a restart hands over at
once. A process that dies without one (SIGKILL, a lost host) keeps its leases until they expire: another process
takes each job at its first round after that, at most `ttl_s` plus a round (`ttl_s / 3`) after the last renewal.

Why lease rows rather than a PostgreSQL session advisory lock (`pg_try_advisory_lock` on a dedicated connection):
the same code runs on SQLite, where several processes may serve one file; no connection is held out of the pool
(nor lost to a pooler in transaction mode, where session locks do not hold); the hand-over time is bounded by the
lease, not by TCP keepalive when a host vanishes without closing its connection; and `SELECT * FROM leases` shows
an operator who runs what. The cost is a one-row UPDATE per process every `ttl_s / 3`.

The lease keeps a job to one process; what a job does is also claimed item by item (a notice under its own lease,
a checkpoint under the log's lock and a unique tree size, a reminder once a day per request), so a leader frozen past
its lease that wakes up before it notices cannot do an item a second time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from server.db import connection, is_postgres, placeholders

log = logging.getLogger("server.leases")

Job = Callable[[], Coroutine[Any, Any, None]]

_NOW = {
    "postgres": "EXTRACT(EPOCH FROM clock_timestamp())::double precision",
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
}


def holder_name() -> str:
    """This process, as the `holder` column names it: host, pid, and a random part a restarted pid does not repeat."""
    return f"{socket.gethostname()[:80]}/{os.getpid()}/{secrets.token_hex(4)}"


class Elector:
    """Runs each of `jobs` (name: coroutine function, run until cancelled) while this process holds its lease."""

    def __init__(self, jobs: Mapping[str, Job], ttl_s: float, holder: str | None = None) -> None:
        self.jobs = dict(jobs)
        self.ttl_s = ttl_s
        self.holder = holder or holder_name()
        self.running: dict[str, asyncio.Task[None]] = {}
        self._deadline = 0.0  # monotonic time until which the leases last renewed are surely ours
        self._loop: asyncio.Task[None] | None = None

    @property
    def round_s(self) -> float:
        return self.ttl_s / 3

    async def start(self) -> None:
        """Create the jobs' rows, run a first round (so a lone process runs its jobs from the start), then keep
        renewing in the background."""
        if not self.jobs:
            return
        conn = connection()
        marks = placeholders(conn, 1)
        for name in self.jobs:
            await conn.execute_query(
                f"INSERT INTO leases (name, holder, term, expires_at) VALUES ({marks[0]}, '', 0, 0) "
                "ON CONFLICT (name) DO NOTHING",
                [name],
            )
        await self._round_logged()
        self._loop = asyncio.create_task(self._keep())

    async def stop(self) -> None:
        """Cancel the loop and the jobs, then give the leases back (expired now) for another process to take."""
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
        held = list(self.running)
        await self._stop_jobs(held)
        if held:
            conn = connection()
            marks = placeholders(conn, len(held) + 1)
            with contextlib.suppress(Exception):  # a database gone at shutdown: the leases expire on their own
                await conn.execute_query(
                    f"UPDATE leases SET expires_at = 0 WHERE holder = {marks[0]} AND name IN ({', '.join(marks[1:])})",
                    [self.holder, *held],
                )

    async def _keep(self) -> None:
        while True:
            await asyncio.sleep(self.round_s)
            await self._round_logged()

    async def _round_logged(self) -> None:
        try:
            # A round that hangs (a database that does not answer) ends when the leases may no longer be ours.
            async with asyncio.timeout(max(self._deadline - time.monotonic(), self.round_s)):
                await self.round()
        except Exception:  # the database is unreachable: try again next round; stop jobs whose lease may be gone
            log.exception("lease round failed", extra={"holder": self.holder})
            if time.monotonic() >= self._deadline and self.running:
                log.warning("leases not renewed in time: stopping %s", ", ".join(self.running))
                await self._stop_jobs(list(self.running))

    async def round(self) -> set[str]:
        """Renew the leases held, take the expired ones; start the jobs gained, stop those lost. Returns the jobs
        this process holds now."""
        sent = time.monotonic()
        conn = connection()
        now = _NOW["postgres" if is_postgres(conn) else "sqlite"]
        names = list(self.jobs)
        # Markers in the order they appear: `$n` on PostgreSQL, `?` on SQLite.
        me, me_again, ttl, *job_marks, me_still = placeholders(conn, len(names) + 4)
        rows = await conn.execute_query_dict(
            f"UPDATE leases SET term = CASE WHEN holder = {me} THEN term ELSE term + 1 END, holder = {me_again}, "
            f"expires_at = {now} + {ttl} "
            f"WHERE name IN ({', '.join(job_marks)}) AND (holder = {me_still} OR expires_at < {now}) "
            "RETURNING name, term",
            [self.holder, self.holder, float(self.ttl_s), *names, self.holder],
        )
        held = {str(row["name"]): int(row["term"]) for row in rows}
        self._deadline = sent + self.ttl_s
        await self._stop_jobs([name for name in self.running if name not in held])
        for name, term in held.items():
            task = self.running.get(name)
            if task is None or task.done():
                if task is not None and not task.cancelled() and task.exception() is not None:
                    log.error("job %s ended", name, exc_info=task.exception())
                log.info(
                    "running job %s (lease term %d)", name, term, extra={"holder": self.holder, "pid": os.getpid()}
                )
                self.running[name] = asyncio.create_task(self.jobs[name](), name=f"job:{name}")
        return set(held)

    async def _stop_jobs(self, names: list[str]) -> None:
        for name in names:
            task = self.running.pop(name)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            log.info("stopped job %s", name, extra={"holder": self.holder, "pid": os.getpid()})
