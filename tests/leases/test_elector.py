"""server.leases: each background job runs in one process at a time, on the database's leases.

Two electors stand for two server processes (each its own holder name) on one real database. What the processes
themselves do, killed included, is tests/leases/test_processes.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from tortoise import Tortoise

from server.db import tortoise_config
from server.leases import Elector, Job
from server.models import Lease
from tests.databases import run_sync

TTL = 0.9


def counting_jobs(runs: dict[str, list[str]], who: str) -> dict[str, Job]:
    """Jobs that note who runs them, then wait to be cancelled."""

    def job(name: str) -> Job:
        async def run() -> None:
            runs[name].append(who)
            await asyncio.Event().wait()

        return run

    return {name: job(name) for name in runs}


async def until(condition: Callable[[], bool], within: float) -> float:
    """Seconds until `condition()` holds (fails after `within` seconds)."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < within, "condition not met in time"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


def test_one_elector_runs_each_job_another_takes_over_when_it_dies_or_leaves(database_url: str) -> None:
    async def scenario() -> None:
        await Tortoise.init(config=tortoise_config(database_url))
        try:
            runs: dict[str, list[str]] = {"checkpoints": [], "recipient-deliveries": []}
            first = Elector(counting_jobs(runs, "first"), TTL, holder="first")
            second = Elector(counting_jobs(runs, "second"), TTL, holder="second")
            await first.start()
            await second.start()
            await asyncio.sleep(TTL * 2)  # several rounds of both
            assert runs == {"checkpoints": ["first"], "recipient-deliveries": ["first"]}
            assert set(first.running) == {"checkpoints", "recipient-deliveries"} and second.running == {}
            leases = {row.name: (row.holder, row.term) for row in await Lease.all()}
            assert leases == {"checkpoints": ("first", 1), "recipient-deliveries": ("first", 1)}

            # The first "dies": no more rounds, its jobs gone, its leases left to expire.
            assert first._loop is not None
            first._loop.cancel()
            for task in first.running.values():
                task.cancel()
            died = time.monotonic()
            await until(lambda: len(second.running) == 2, within=TTL * 2)
            taken_after = time.monotonic() - died
            assert TTL / 3 < taken_after <= TTL + TTL / 3 + 0.3, taken_after  # not before expiry, within a round
            assert runs == {"checkpoints": ["first", "second"], "recipient-deliveries": ["first", "second"]}
            assert {row.name: (row.holder, row.term) for row in await Lease.all()} == {
                "checkpoints": ("second", 2),
                "recipient-deliveries": ("second", 2),
            }

            # A third comes, the second leaves cleanly: its leases are given back and taken at the next round.
            third = Elector(counting_jobs(runs, "third"), TTL, holder="third")
            await third.start()
            assert third.running == {}
            await second.stop()
            handed_over = await until(lambda: len(third.running) == 2, within=TTL)
            assert handed_over <= TTL / 3 + 0.3
            assert runs["checkpoints"] == ["first", "second", "third"]
            await third.stop()
        finally:
            await Tortoise.close_connections()

    run_sync(scenario())


def test_a_holder_that_finds_its_lease_taken_stops_the_job(database_url: str) -> None:
    """A process frozen past its lease (here: its lease handed to another by hand) stops the job at its next
    round, before doing more of it."""

    async def scenario() -> None:
        await Tortoise.init(config=tortoise_config(database_url))
        try:
            runs: dict[str, list[str]] = {"checkpoints": []}
            elector = Elector(counting_jobs(runs, "me"), TTL, holder="me")
            await elector.start()
            assert set(elector.running) == {"checkpoints"}
            task = elector.running["checkpoints"]
            await Lease.filter(name="checkpoints").update(holder="someone-else", term=7, expires_at=4e9)
            await until(lambda: elector.running == {}, within=TTL)
            assert task.cancelled()
            await elector.stop()
            assert (await Lease.get(name="checkpoints")).holder == "someone-else", "stop gives back only its own"
        finally:
            await Tortoise.close_connections()

    run_sync(scenario())
