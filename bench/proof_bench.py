"""Proof benchmarks: a checkpoint over a large log (from scratch, then incremental) and the proof bundle of a
subject with many events in that ledger.

    python -m bench.proof_bench [--events 1000000] [--subject-events 1000] [--backend sqlite|postgres|both]

Per backend, in one run: a fresh database; N - S single-event subjects seeded straight into the tables (valid
chains, queued for the log, as the recording transaction leaves them: `bench.seed`); S events recorded for one
subject through the real `Ledger.record`; then, timed:
- the first checkpoint, which sequences all N events into the log and builds the Merkle tree (target <= 10 s for
  1,000,000 events);
- an incremental checkpoint after 1,000 more events;
- the subject's proof bundle (target <= 500 ms for 1,000 events in a ledger of 1,000,000), then its offline check.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tortoise import Tortoise

from bench.check_bench import Database, run_async
from bench.machine import describe, python_loop_seconds
from bench.seed import prepare_database, seed_database
from server.composition import build_services
from server.db import tortoise_config
from server.ledger.append import Decision, RecordRequest
from server.proof.bundle import Scope, build_bundle
from server.proof.verify_bundle import verify_bundle
from server.settings import Settings

REPO = Path(__file__).resolve().parent.parent
SECRET = "bench-proof-secret-" + "k" * 32
SUBJECT = "bench-proof-subject"


async def _record_many(services: Any, ref: str, count: int, start_action: str = "grant") -> float:
    """`count` single-decision record calls alternating grant/withdraw; returns seconds."""
    started = time.perf_counter()
    action = start_action
    for _ in range(count):
        await services.ledger.record(
            RecordRequest(
                ref=ref,
                policy="privacy-policy/2/en",
                decisions=[Decision("offers", "email", action)],
                touchpoint="api",
                method="bench",
                actor_type="client",
                actor_id="bench",
            )
        )
        action = "withdraw" if action == "grant" else "grant"
    return time.perf_counter() - started


async def run_backend(backend: str, events: int, subject_events: int, workdir: Path, admin_url: str) -> dict[str, Any]:
    database = Database(backend, workdir, admin_url)
    await asyncio.to_thread(database.create)
    try:
        await prepare_database(database.url, REPO / "policy_docs")
        seeded_started = time.perf_counter()
        await seed_database(database.url, SECRET, events - subject_events, kind="audience")
        seed_s = time.perf_counter() - seeded_started
        settings = Settings(
            database_url=database.url,
            secret_key=SECRET,
            signing_keys_dir=workdir / f"keys-{backend}",
            public_url="http://127.0.0.1:8000",
            policy_dir=REPO / "policy_docs",
            environment="test",
        )
        await Tortoise.init(config=tortoise_config(database.url))
        try:
            services = build_services(settings, lambda: datetime.now(UTC))
            record_s = await _record_many(services, SUBJECT, subject_events)
            started = time.perf_counter()
            first = await services.log.checkpoint()
            first_s = time.perf_counter() - started
            await _record_many(services, "bench-proof-other", 1000)
            started = time.perf_counter()
            second = await services.log.checkpoint()
            incremental_s = time.perf_counter() - started
            timings = []
            data = b""
            for _ in range(3):
                started = time.perf_counter()
                _, data = await build_bundle(services.bundles, SUBJECT, Scope(), ("client", "bench"))
                timings.append(time.perf_counter() - started)
            path = workdir / f"bundle-{backend}.zip"
            path.write_bytes(data)
            started = time.perf_counter()
            verdict = verify_bundle(path)
            verify_s = time.perf_counter() - started
            for failure in verdict.failures[:5]:
                print(f"  verification failure: {failure}", flush=True)
        finally:
            await Tortoise.close_connections()
        return {
            "backend": backend,
            "seeded_events": events - subject_events,
            "seed_s": round(seed_s, 1),
            "subject_events": subject_events,
            "record_calls_per_s": round(subject_events / record_s),
            "first_checkpoint_tree_size": first.tree_size,
            "first_checkpoint_s": round(first_s, 2),
            "incremental_checkpoint_tree_size": second.tree_size,
            "incremental_checkpoint_ms": round(incremental_s * 1000, 1),
            "bundle_ms_best_of_3": round(min(timings) * 1000, 1),
            "bundle_bytes": len(data),
            "bundle_verifies": verdict.passed,
            "verify_ms": round(verify_s * 1000, 1),
        }
    finally:
        await asyncio.to_thread(database.drop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.proof_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--subject-events", type=int, default=1000)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--postgres-url", default="postgres://postgres@127.0.0.1:5432/test")
    args = parser.parse_args(argv)
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    results = []
    speed = python_loop_seconds()
    with tempfile.TemporaryDirectory(prefix="proof-bench-") as tmp:
        for backend in backends:
            print(f"[{backend}] {args.events:,} events ...", flush=True)
            work = functools.partial(
                run_backend, backend, args.events, args.subject_events, Path(tmp), args.postgres_url
            )
            results.append(run_async(work))
    print()
    print(describe(speed))
    print(f"{'backend':9}{'figure':48}{'value':>14}  target")
    for r in results:
        rows = [
            ("seeded events (bench.seed)", f"{r['seeded_events']:,} in {r['seed_s']} s", ""),
            ("record calls/s (one subject, 1 decision each)", f"{r['record_calls_per_s']:,}", ""),
            (
                f"first checkpoint, {r['first_checkpoint_tree_size']:,} events",
                f"{r['first_checkpoint_s']} s",
                "<= 10 s",
            ),
            (
                f"incremental checkpoint, +1,000 -> {r['incremental_checkpoint_tree_size']:,}",
                f"{r['incremental_checkpoint_ms']} ms",
                "",
            ),
            (
                f"proof bundle, {r['subject_events']:,} events (best of 3)",
                f"{r['bundle_ms_best_of_3']} ms",
                "<= 500 ms",
            ),
            ("bundle size / verifies offline", f"{r['bundle_bytes']:,} B / {r['bundle_verifies']}", ""),
            ("offline verification", f"{r['verify_ms']} ms", ""),
        ]
        for name, value, target in rows:
            print(f"{r['backend']:9}{name:48}{value:>14}  {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
