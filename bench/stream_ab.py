"""Stream A/B: one seeded database, `POST /v1/consents/check/stream` served by two or more source trees in turn.

    git worktree add /tmp/before <rev>
    python -m bench.stream_ab --tree before=/tmp/before --tree after=. [--backend postgres] [--rounds 3]

This machine's speed drifts by more within an hour than most changes to the stream are worth (bench/README.md), so a
change is judged by servers of each tree alternated on the same database with the same questions, the order flipped
every round. Each run: a warm-up stream, then 1,000,000 checks (`--stream-checks`); printed per run: checks/s, and
the CPU a check of the server and (PostgreSQL) of all of PostgreSQL's processes, read from `/proc`. The database is
migrated and seeded by this checkout: every tree must work on this checkout's schema.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import statistics
import sys
import tempfile
from pathlib import Path

import psutil

from bench.check_bench import (
    POLICY_DIR,
    BenchServer,
    Database,
    Options,
    create_bench_client,
    get_token,
    log,
    run_async,
    stream_checks,
)
from bench.machine import describe, python_loop_seconds
from bench.seed import prepare_database, seed_database


def postgres_cpu_seconds() -> float:
    """User and system CPU of every process named postgres* (the backends, and the server's own processes)."""
    total = 0.0
    for process in psutil.process_iter(["name"]):
        if (process.info["name"] or "").startswith("postgres"):
            try:
                times = process.cpu_times()
            except psutil.Error:  # ended meanwhile
                continue
            total += times.user + times.system
    return total


def _tree(value: str) -> tuple[str, Path]:
    name, sep, path = value.partition("=")
    tree = Path(path).resolve()
    if not sep or not name or not (tree / "server" / "__init__.py").is_file():
        raise argparse.ArgumentTypeError(f"{value!r}: expected NAME=PATH to a checkout of this project")
    return name, tree


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stream_ab", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", type=_tree, action="append", required=True, help="NAME=PATH, two or more")
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="postgres")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each tree (default 3)")
    parser.add_argument("--subjects", type=int, default=100_000)
    parser.add_argument("--stream-checks", type=int, default=1_000_000)
    parser.add_argument(
        "--postgres-url", default=os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")
    )
    args = parser.parse_args(argv)
    trees: list[tuple[str, Path]] = args.tree
    if len(trees) < 2 or len({name for name, _ in trees}) != len(trees) or args.rounds < 1:
        parser.error("two or more --tree with distinct names, and --rounds >= 1")
    opts = Options(
        subjects=args.subjects,
        audience=0,
        backends=[args.backend],
        duration=0,
        postgres_url=args.postgres_url,
        stream_checks=args.stream_checks,
        workers=None,
        seed=1,
        wrk="",
        python_loop_s=python_loop_seconds(),
    )
    print(describe(opts.python_loop_s), flush=True)
    secret_key = secrets.token_urlsafe(32)
    with tempfile.TemporaryDirectory(prefix="stream-ab-") as scratch:
        workdir = Path(scratch)
        database = Database(args.backend, workdir, args.postgres_url)
        database.create()
        try:
            log(f"{args.backend}: seeding {args.subjects:,} subjects")
            run_async(lambda: prepare_database(database.url, POLICY_DIR))
            run_async(lambda: seed_database(database.url, secret_key, args.subjects))
            client_id, client_secret = run_async(lambda: create_bench_client(database.url))
            figures: dict[str, list[float]] = {name: [] for name, _ in trees}
            for round_number in range(args.rounds):
                order = trees if round_number % 2 == 0 else trees[::-1]
                for name, tree in order:
                    run_dir = workdir / f"{name}-{round_number}"
                    run_dir.mkdir()
                    server = BenchServer(database.url, secret_key, run_dir)
                    server.env["PYTHONPATH"] = str(tree)
                    server.start()
                    try:
                        token = get_token(server.base_url, client_id, client_secret)
                        stream_checks(opts, server, token, random.Random(-1))  # warm-up
                        before = postgres_cpu_seconds()
                        result = stream_checks(opts, server, token, random.Random(round_number))
                        database_cpu = postgres_cpu_seconds() - before
                    finally:
                        server.stop()
                    figures[name].append(result["checks_per_s"])
                    per_check = 1e6 / args.stream_checks
                    database_part = (
                        f", PostgreSQL {database_cpu * per_check:.2f} us" if args.backend == "postgres" else ""
                    )
                    log(
                        f"{name}: {result['checks_per_s']:,.0f} checks/s; CPU a check: server "
                        f"{result['server_cpu_s'] * per_check:.2f} us{database_part}"
                    )
        finally:
            database.drop()
    for name, runs in figures.items():
        listed = " / ".join(f"{value:,.0f}" for value in sorted(runs))
        print(f"{name}: median {statistics.median(runs):,.0f} checks/s ({listed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
