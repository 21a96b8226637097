"""The stream's work without HTTP: how many checks a second this machine can answer at all.

`python -m bench.stream_bound [--backend sqlite|postgres|both] [--processes N]` seeds a fresh database as
`check_bench` does, then runs in each of N processes what `POST /v1/consents/check/stream` does with a body chunk:
parse and validate its lines at once (`BulkRule.keys`), read the keys and write the answer lines
(`BulkRule.answers`, through the same reader as the server: SQLite's bulk thread, or PostgreSQL's pool). There is no
HTTP, no socket and no client, and the processes share no GIL; each takes one chunk at a time. The sum is an upper
bound for the HTTP stream of `check_bench` on the same machine, on the same day, and is printed beside the stream
target (bench/README.md, "Where a stream's time goes").
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import secrets
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.check_bench import (
    POLICY_DIR,
    Database,
    check_line,
    questions,
    run_async,
)
from bench.machine import describe, python_loop_seconds
from bench.seed import prepare_database, seed_database

STREAM_TARGET = 200_000


@dataclass(frozen=True)
class ProcessFigures:
    checks: int
    seconds: float
    cpu_seconds: float  # this process's threads; PostgreSQL's backends are not counted


def _answer_lines(database_url: str, lines: list[bytes], chunk: int, start: Any) -> ProcessFigures:
    """One process: answer `lines` a chunk at a time, as the stream endpoint does with each body chunk, once every
    process is ready (`start`, a barrier: no process measures while another still loads)."""
    from tortoise import Tortoise

    from server.consent.bulk import BulkRule
    from server.consent.open import open_reader
    from server.db import tortoise_config
    from server.policies.catalog import Catalog

    async def work() -> ProcessFigures:
        await Tortoise.init(config=tortoise_config(database_url))
        try:
            catalog = await Catalog(ttl_s=3600).get()
        finally:
            await Tortoise.close_connections()
        reader = await open_reader(database_url)
        try:
            start.wait()
            started, cpu_started = time.perf_counter(), time.process_time()
            for first in range(0, len(lines), chunk):
                part = lines[first : first + chunk]
                rule = BulkRule(catalog, datetime.now(UTC))
                keys = rule.keys(b"\n".join(part), len(part))
                if keys is None:
                    raise RuntimeError("a generated line was not a well-formed check")
                answers = await rule.answers(reader, keys, range(first + 1, first + 1 + len(keys)))
                answers.append("")
                "\n".join(answers).encode()  # the chunk of the response body the endpoint would send
            return ProcessFigures(len(lines), time.perf_counter() - started, time.process_time() - cpu_started)
        finally:
            await reader.close()

    return run_async(work)


def _process_main(database_url: str, lines: list[bytes], chunk: int, start: Any, results: Any) -> None:
    results.put(_answer_lines(database_url, lines, chunk, start))


def measure(database_url: str, subjects: int, processes: int, checks: int, seed: int) -> list[ProcessFigures]:
    """Start `processes` processes together, each answering `checks` generated checks; their figures."""
    from server.consent.service import STREAM_CHUNK

    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(processes + 1, timeout=300), context.Queue()
    workers = []
    for n in range(processes):
        lines = [check_line(*q) for q in questions(random.Random(seed + n), subjects, checks)]
        worker = context.Process(target=_process_main, args=(database_url, lines, STREAM_CHUNK, start, results))
        worker.start()
        workers.append(worker)
    start.wait()  # every process has loaded the catalog and opened its reader
    figures = [results.get(timeout=600) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
        if worker.exitcode != 0:
            raise RuntimeError(f"a measuring process exited with {worker.exitcode}")
    return figures


def run_backend(backend: str, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix=f"bound-{backend}-") as tmp:
        database = Database(backend, Path(tmp), args.postgres_url)
        database.create()
        try:
            run_async(lambda: prepare_database(database.url, POLICY_DIR))
            print(f"{backend}: seeding {args.subjects:,} subjects", flush=True)
            run_async(
                lambda: seed_database(
                    database.url, secrets.token_urlsafe(48), args.subjects, kind="mixed", seed=args.seed
                )
            )
            for run in range(1, args.runs + 1):
                figures = measure(database.url, args.subjects, args.processes, args.checks, args.seed + 100 * run)
                total = sum(f.checks for f in figures)
                rate = total / max(f.seconds for f in figures)
                cpu = sum(f.cpu_seconds for f in figures) / total * 1e6
                print(
                    f"{backend}: run {run}: {rate:,.0f} checks/s in {args.processes} process(es) "
                    f"(each {', '.join(f'{f.checks / f.seconds:,.0f}' for f in figures)}); "
                    f"{cpu:.1f} us of CPU a check in the processes; stream target {STREAM_TARGET:,}",
                    flush=True,
                )
        finally:
            database.drop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stream_bound", description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--checks", type=int, default=300_000, help="checks answered by each process")
    parser.add_argument("--subjects", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test"),
        help="server on which a fresh database is created and dropped",
    )
    args = parser.parse_args(argv)
    if args.processes < 1 or args.checks < 1 or args.subjects < 1 or args.runs < 1:
        parser.error("--processes, --checks, --subjects and --runs must be positive")
    print(describe(python_loop_seconds()), flush=True)
    for backend in ("sqlite", "postgres") if args.backend == "both" else (args.backend,):
        run_backend(backend, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
