"""Benchmark of writes, on SQLite and PostgreSQL, beside a raw-driver floor measured in the same run.

    python -m bench.write_bench [--backend sqlite|postgres|both] [--duration 5] [--rounds 2]
                                [--processes 1,2] [--connections 1,16] [--kinds new,existing,banner]

Per backend: a fresh database (as `bench.check_bench` makes it), migrations, policies, an API client with scope
`consent:write`, `EXISTING` subjects recorded through the API; then per number of server processes, one or two
`python -m bench.write_serve` on one `SO_REUSEPORT` port, a warm-up of WARMUP_SECONDS (not counted), and for each
connection count and kind of write one `wrk` run (`-t1` at 1 connection, `-t2` at 16) of `--duration` seconds:

- `new`: `POST /v1/subjects/{ref}/consents`, a ref never seen (the subject is created), two grants (offers/email,
  partners/sms), the shape of the anchors' write figures;
- `existing`: the same call for a random subject among `EXISTING` already recorded (the projection rows updated);
- `banner`: `POST /v1/cookie-consents`, `accept_all` from a new consent id (three web grants and the banner text's
  snapshot), with the site's `Origin`.

The floor, alternated with the server runs at each connection count: `python -m bench.write_baseline`, a process
inserting and committing one events-sized row per write with the raw driver (asyncpg / sqlite3), at the same
concurrency. The server processes' CPU time during each run (psutil) divided by the writes gives the CPU a write.
Every answer must be 2xx (wrk counts the others) and the ledger must hold as many events as the answers say.

`wrk` (C, one or two threads) is the load: it costs a fraction of what a Python client would on 2 cores shared with
the servers, and it is what `bench.check_bench` uses. Results are saved under `bench/results/`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.check_bench import (
    HOST,
    POLICY_DIR,
    REPO,
    RESULTS_DIR,
    BenchError,
    Database,
    create_bench_client,
    find_wrk,
    free_port,
    get_token,
    log,
    run_async,
)
from bench.machine import describe, python_loop_seconds
from bench.seed import prepare_database

EXISTING = 400
WARMUP_SECONDS = 3
BANNER_ORIGIN = "http://127.0.0.1:8000"  # an origin of the `demo` site (policy_docs/sites.yaml)
API_DECISIONS = [
    {"purpose": "offers", "channel": "email", "action": "grant"},
    {"purpose": "partners", "channel": "sms", "action": "grant"},
]
API_BODY = {
    "policy": {"document": "privacy-policy", "version": "2", "lang": "fr"},
    "decisions": API_DECISIONS,
    "evidence": {"ip": "203.0.113.7", "user_agent": "bench/1.0 (write bench)"},
}
EVENTS_PER_WRITE = {"new": 2, "existing": 2, "banner": 3}
TARGET_RATIO = 0.5  # PostgreSQL, 16 connections: writes/s >= 0.5 x the raw-driver floor (issue 24)

WRK_SCRIPT = r"""
-- Writes: each request a new ref (or consent id), or a random existing one; prints a JSON summary.
local counter = 0
local threads = {}
function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end
function init(args)
  kind, tag, token, body, existing = args[1], args[2], args[3], args[4], tonumber(args[5])
  n = 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  if kind == "banner" then
    wrk.headers["Origin"] = args[6]
  else
    wrk.headers["Authorization"] = "Bearer " .. token
  end
  math.randomseed(id * 7919 + os.time())
end
function request()
  n = n + 1
  if kind == "banner" then
    local cid = string.format("ck_%s%02d%016d", tag, id, n)
    return wrk.format(nil, "/v1/cookie-consents", nil, string.format(body, cid))
  elseif kind == "new" then
    return wrk.format(nil, string.format("/v1/subjects/w%s_%d_%d/consents", tag, id, n), nil, body)
  else
    return wrk.format(nil, string.format("/v1/subjects/existing_%d/consents", math.random(0, existing - 1)), nil, body)
  end
end
function done(summary, latency, requests)
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,' ..
    '"status_errors":%d,"timeouts":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.status, summary.errors.timeout, latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass(frozen=True)
class Options:
    backends: list[str]
    duration: int
    rounds: int
    processes: list[int]
    connections: list[int]
    kinds: list[str]
    postgres_url: str
    wrk: str
    python_loop_s: float


class WriteServers:
    """`processes` x `python -m bench.write_serve` on one SO_REUSEPORT port, settings in the environment."""

    def __init__(self, database_url: str, secret_key: str, workdir: Path, processes: int) -> None:
        self.port = free_port()
        self.base_url = f"http://{HOST}:{self.port}"
        self.count = processes
        self.workdir = workdir
        self.env = {
            **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SECRET_KEY", "DATA_DIR")},
            "PYTHONPATH": str(REPO),
            "DATABASE_URL": database_url,
            "SECRET_KEY": secret_key,
            "DATA_DIR": str(workdir / "data"),
            "SIGNING_KEYS_DIR": str(workdir / "signing-keys"),
            "PUBLIC_URL": "https://consent.bench.example",
            "POLICY_DIR": str(POLICY_DIR),
            "LOG_LEVEL": "WARNING",
            "ENVIRONMENT": "production",
            "TOKEN_LIFETIME_SECONDS": "86400",
            # Sequencing the log is the proof benchmark's subject, not this one's: its loop is off while measuring.
            "CHECKPOINT_INTERVAL_SECONDS": "0",
            # wrk sends every banner choice from 127.0.0.1: one network, whose per-minute budget would refuse most.
            "COOKIE_RATE_PER_MINUTE": "100000",
        }
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, timeout: float = 60.0) -> None:
        for index in range(self.count):
            log_file = (self.workdir / f"server-{self.port}-{index}.log").open("wb")
            self.processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "bench.write_serve", "--host", HOST, "--port", str(self.port)],
                    cwd=self.workdir,
                    env=self.env,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                )
            )
            # One at a time: the first start creates the signing key, which the second then reads.
            self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.base_url, timeout=2.0) as client:
            while time.monotonic() < deadline:
                for process in self.processes:
                    if process.poll() is not None:
                        raise BenchError(f"a write server exited with {process.returncode}:\n{self.log_tail()}")
                try:
                    if client.get("/readyz").status_code == 200:
                        time.sleep(0.5 if len(self.processes) > 1 else 0)
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        raise BenchError(f"the write server was not ready within {timeout:.0f} s:\n{self.log_tail()}")

    def cpu_seconds(self) -> float:
        total = 0.0
        for process in self.processes:
            times = psutil.Process(process.pid).cpu_times()
            total += times.user + times.system
        return total

    def log_tail(self, lines: int = 30) -> str:
        text = []
        for path in sorted(self.workdir.glob(f"server-{self.port}-*.log")):
            text.extend(path.read_text(errors="replace").splitlines()[-lines:])
        return "\n".join(text) or "(no server log)"

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def banner_template(base_url: str) -> str:
    """The body of an `accept_all` choice for site `demo`, with `%s` where the consent id goes (wrk's format)."""
    config = httpx.get(f"{base_url}/v1/banner/config", params={"site": "demo"}, headers={"Origin": BANNER_ORIGIN})
    if config.status_code != 200:
        raise BenchError(f"banner config: HTTP {config.status_code} {config.text[:300]}")
    data = config.json()
    body = {
        "site": "demo",
        "consent_id": "CONSENT_ID",
        "categories": ["preferences", "analytics", "marketing"],
        "method": "accept_all",
        "policy_version": data["policy"]["fr"]["version"],
        "lang": "fr",
        "text_sha256": data["hash"]["fr"],
    }
    return json.dumps(body).replace("%", "%%").replace('"CONSENT_ID"', '"%s"')


def record_existing(base_url: str, token: str) -> None:
    """EXISTING subjects, each with the two grants the `existing` runs record again."""
    with httpx.Client(base_url=base_url, timeout=30, headers={"Authorization": f"Bearer {token}"}) as client:
        for index in range(EXISTING):
            answer = client.post(f"/v1/subjects/existing_{index}/consents", json=API_BODY)
            if answer.status_code != 201:
                raise BenchError(f"recording existing subjects: HTTP {answer.status_code} {answer.text[:300]}")


def event_count(database_url: str) -> int:
    async def count() -> int:
        from tortoise import Tortoise

        from server.db import tortoise_config

        await Tortoise.init(config=tortoise_config(database_url))
        try:
            conn = Tortoise.get_connection("default")
            _, rows = await conn.execute_query("SELECT count(*) AS n FROM consent_events")
            return int(dict(rows[0])["n"])
        finally:
            await Tortoise.close_connections()

    return run_async(count)


def run_wrk(opts: Options, servers: WriteServers, script: Path, kind: str, connections: int, args: list[str]) -> Any:
    threads = 1 if connections == 1 else 2
    cpu_before = servers.cpu_seconds()
    completed = subprocess.run(
        [
            opts.wrk,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{opts.duration}s",
            "--latency",
            "--timeout",
            "10s",
            "-s",
            str(script),
            f"{servers.base_url}/",
            "--",
            kind,
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=opts.duration + 60,
    )
    cpu = servers.cpu_seconds() - cpu_before
    for line in completed.stdout.splitlines():
        if line.startswith("BENCHJSON "):
            result: dict[str, Any] = json.loads(line.removeprefix("BENCHJSON "))
            result["writes_per_s"] = result["requests"] / (result["duration_us"] / 1e6)
            result["server_cpu_ms_per_write"] = 1000 * cpu / max(1, result["requests"])
            return result
    raise BenchError(f"wrk printed no summary:\n{completed.stdout}\n{completed.stderr}\n{servers.log_tail()}")


def run_baseline(database_url: str, connections: int, duration: int) -> dict[str, Any]:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.write_baseline",
            "--url",
            database_url,
            "--connections",
            str(connections),
            "--duration",
            str(duration),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=duration + 60,
    )
    if completed.returncode != 0:
        raise BenchError(f"the baseline failed:\n{completed.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def run_backend(backend: str, opts: Options) -> dict[str, Any]:
    report: dict[str, Any] = {"backend": backend, "runs": [], "baselines": []}
    with tempfile.TemporaryDirectory(prefix=f"write-bench-{backend}-") as tmp:
        workdir = Path(tmp)
        database = Database(backend, workdir, opts.postgres_url)
        database.create()
        try:
            log(f"{backend}: migrations, policies, API client")
            run_async(lambda: prepare_database(database.url, POLICY_DIR))
            client_id, client_secret = run_async(lambda: create_bench_client(database.url, "consent:write"))
            secret_key = secrets.token_urlsafe(32)
            script = workdir / "writes.lua"
            script.write_text(WRK_SCRIPT)
            body = json.dumps(API_BODY)
            for processes in opts.processes:
                servers = WriteServers(database.url, secret_key, workdir, processes)
                log(f"{backend}: {processes} server process(es) on port {servers.port}")
                servers.start()
                try:
                    token = get_token(servers.base_url, client_id, client_secret)
                    if processes == opts.processes[0]:
                        log(f"{backend}: recording {EXISTING} existing subjects")
                        record_existing(servers.base_url, token)
                    banner = banner_template(servers.base_url)
                    # Not counted: the first writes of a fresh process pay for its start (imports, the first query
                    # plans, the stream workers' start), which showed as 12 ms of CPU a write in the first run.
                    warm = Options(**{**opts.__dict__, "duration": WARMUP_SECONDS})
                    run_wrk(warm, servers, script, "new", 16, [secrets.token_hex(2), token, body, str(EXISTING), ""])
                    for round_index in range(opts.rounds):
                        for connections in opts.connections:
                            for kind in opts.kinds:
                                tag = secrets.token_hex(2)  # 4 characters: refs and consent ids of this run only
                                before = event_count(database.url)
                                args = [tag, token, banner if kind == "banner" else body, str(EXISTING), BANNER_ORIGIN]
                                result = run_wrk(opts, servers, script, kind, connections, args)
                                stored = event_count(database.url) - before
                                errors = sum(
                                    result[k]
                                    for k in ("connect_errors", "read_errors", "write_errors", "status_errors")
                                )
                                if errors or stored < result["requests"] * EVENTS_PER_WRITE[kind]:
                                    raise BenchError(
                                        f"{kind} c{connections}: {errors} errors, {stored} events stored for "
                                        f"{result['requests']} answers\n{servers.log_tail()}"
                                    )
                                run = {
                                    "processes": processes,
                                    "connections": connections,
                                    "kind": kind,
                                    "round": round_index,
                                    **result,
                                }
                                report["runs"].append(run)
                                log(
                                    f"  {processes}p c{connections:<2} {kind:<8} {result['writes_per_s']:8.1f} writes/s"
                                    f"  p50 {result['p50_us'] / 1000:6.1f} ms  p99 {result['p99_us'] / 1000:6.1f} ms"
                                    f"  server CPU {result['server_cpu_ms_per_write']:.2f} ms/write"
                                )
                            if processes == opts.processes[0]:
                                baseline = run_baseline(database.url, connections, opts.duration)
                                report["baselines"].append({"connections": connections, **baseline})
                                log(f"  baseline c{connections:<2} {baseline['writes_per_s']:8.1f} writes/s")
                finally:
                    servers.stop()
        except BenchError as exc:
            report["error"] = str(exc)
            log(f"{backend}: FAILED: {exc}")
        finally:
            database.drop()
    return report


def summary_rows(report: dict[str, Any]) -> list[tuple[str, ...]]:
    """Best run of each (processes, connections, kind) and its ratio to the best baseline at that concurrency."""
    best_base: dict[int, float] = {}
    for base in report["baselines"]:
        best_base[base["connections"]] = max(best_base.get(base["connections"], 0.0), base["writes_per_s"])
    best: dict[tuple[int, int, str], dict[str, Any]] = {}
    for run in report["runs"]:
        key = (run["processes"], run["connections"], run["kind"])
        if key not in best or run["writes_per_s"] > best[key]["writes_per_s"]:
            best[key] = run
    rows: list[tuple[str, ...]] = []
    for (processes, connections, kind), run in sorted(best.items()):
        base = best_base.get(connections)
        ratio = f"{run['writes_per_s'] / base:.2f}" if base else "-"
        rows.append(
            (
                report["backend"],
                str(processes),
                str(connections),
                kind,
                f"{run['writes_per_s']:,.0f}",
                f"{run['p50_us'] / 1000:.1f}",
                f"{run['p99_us'] / 1000:.1f}",
                f"{run['server_cpu_ms_per_write']:.2f}",
                f"{base:,.0f}" if base else "-",
                ratio,
            )
        )
    return rows


def print_table(reports: list[dict[str, Any]], opts: Options) -> None:
    header = ("backend", "procs", "conns", "kind", "writes/s", "p50 ms", "p99 ms", "CPU ms/w", "baseline/s", "ratio")
    rows = [header] + [row for report in reports for row in summary_rows(report)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    print()
    print(describe(opts.python_loop_s))
    print(f"best of {opts.rounds} run(s) of {opts.duration} s each; baseline: raw driver, one row per commit")
    for row in rows:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))
    print(
        f"target: PostgreSQL, 16 connections, writes/s >= {TARGET_RATIO} x baseline. CPU ms/w: the server "
        "processes' CPU time over the writes (2 cores shared with wrk, the baseline's database and others)."
    )
    for report in reports:
        if "error" in report:
            print(f"{report['backend']}: FAILED: {report['error'].splitlines()[0]}")


def save_results(reports: list[dict[str, Any]], opts: Options) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"write_bench-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    meta = {
        "python_loop_s": opts.python_loop_s,
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "duration": opts.duration,
        "rounds": opts.rounds,
    }
    path.write_text(json.dumps({"meta": meta, "reports": reports}, indent=2))
    return path


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.write_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of every run; the best counts (default 2)")
    parser.add_argument("--processes", default="1,2", help="server process counts (default 1,2)")
    parser.add_argument("--connections", default="1,16", help="connection counts (default 1,16)")
    parser.add_argument("--kinds", default="new,existing,banner", help="kinds of write (default all three)")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test"),
        help="server on which a fresh database is created and dropped",
    )
    args = parser.parse_args(argv)
    wrk = find_wrk()
    if wrk is None:
        print("wrk is not installed: install it with `apt-get install -y wrk`.")
        return 2
    kinds = [k for k in args.kinds.split(",") if k]
    if not set(kinds) <= set(EVENTS_PER_WRITE):
        parser.error(f"--kinds: choose among {', '.join(EVENTS_PER_WRITE)}")
    opts = Options(
        backends=["sqlite", "postgres"] if args.backend == "both" else [args.backend],
        duration=args.duration,
        rounds=args.rounds,
        processes=_ints(args.processes),
        connections=_ints(args.connections),
        kinds=kinds,
        postgres_url=args.postgres_url,
        wrk=wrk,
        python_loop_s=python_loop_seconds(),
    )
    log(describe(opts.python_loop_s))
    reports = [run_backend(backend, opts) for backend in opts.backends]
    print_table(reports, opts)
    path = save_results(reports, opts)
    print(f"\nSaved {path.relative_to(REPO)}.")
    return 1 if any("error" in r for r in reports) else 0


if __name__ == "__main__":
    raise SystemExit(main())
