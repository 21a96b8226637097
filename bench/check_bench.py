"""Benchmark of the consent-check API, on SQLite and PostgreSQL, in one command.

    python -m bench.check_bench [--subjects N] [--audience M] [--backend sqlite|postgres|both] [--duration 10]

Per backend: a fresh database (SQLite file in a temp dir; PostgreSQL database created on `--postgres-url`'s server
and dropped afterwards), migrations, policies, N seeded subjects (`bench.seed`), an API client, the bench server
(`bench.app`, uvicorn, 1 worker) as a subprocess, a token; then

- a correctness pass: sampled seeded subjects (and unknown refs) read back through the real API, batch and single;
- single check vs baseline: `wrk -t2 -c50 --latency`, random questions; alternated twice, best of each;
- batch: one POST of 10,000 checks, client-side wall clock, median of 5 after a warm-up;
- stream: 1,000,000 NDJSON checks through a duplex chunked connection; checks/s and server peak RSS growth;
- audience: M more subjects granted offers/email seeded into the SAME database (after the other measurements, so
  they ran on N subjects), then `GET /v1/audiences/offers/email` timed to the last byte, best of 2.

A table with the targets is printed at the end and the figures are saved under `bench/results/`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import platform
import random
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import httpx
import orjson
import psutil

from bench.app import BASELINE_PATH, event_loop_and_parser
from bench.machine import describe, python_loop_seconds
from bench.seed import PAIRS, UNKNOWN_PREFIX, SeedResult, asyncpg_dsn, prepare_database, ref_of, seed_database

REPO = Path(__file__).resolve().parent.parent
POLICY_DIR = REPO / "policy_docs"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
HOST = "127.0.0.1"
WRK_THREADS, WRK_CONNECTIONS = 2, 50
WARMUP_SECONDS = 2
UNKNOWN_SHARE = 0.1
QUESTION_FILE_LINES = 20_000
BATCH_SIZE = 10_000
BATCH_RUNS = 5
STREAM_LINES_PER_CHUNK = 1000
# Checks streamed before the measured stream, as wrk's runs have their warm-up: the first stream after seeding read
# PostgreSQL's subjects from the OS cache (the seed's writes had filled shared_buffers) and measured 155-161k against
# 192-245k checks/s for the same code warmed (bench/README.md, "twelfth session"). Its own figure is printed too.
STREAM_WARMUP = 200_000
RSS_INTERVAL_S = 0.05
AUDIENCE = ("offers", "email")
AUDIENCE_RUNS = 2
FEED_CHANGES = 1000  # withdrawals recorded through the API before the change feed is polled
FEED_RUNS = 3
SCOPES = "consent:check"
WRITER_SCOPES = "consent:write"  # the change-feed phase records its changes through the API
_JSON = {"Content-Type": "application/json"}
T = TypeVar("T")

TARGETS = {
    "ratio": ("check/baseline req/s", ">= 1.0"),
    "p99": ("check p99 latency", "<= 15 ms"),
    "batch": ("batch of 10,000", "<= 150 ms"),
    "stream": ("stream checks/s", ">= 200,000"),
    "rss": ("stream peak RSS growth", "<= 50 MB"),
    "audience": ("audience export rows/s", ">= 300,000"),
}

WRK_SCRIPT = r"""
-- Random requests from a pre-generated list of paths (one per line); prints a JSON summary.
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end
function init(args)
  paths = {}
  for line in io.lines(args[1]) do paths[#paths + 1] = line end
  wrk.headers["Authorization"] = "Bearer " .. args[2]
  math.randomseed(id * 7919 + os.time())
end
function request()
  return wrk.format("GET", paths[math.random(#paths)])
end
function done(summary, latency, requests)
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"status_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"mean_us":%.1f,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout, latency:percentile(50),
    latency:percentile(90), latency:percentile(99), latency.mean, latency.max))
end
"""


class BenchError(RuntimeError):
    """A step failed; the message says which and why."""


@dataclass(frozen=True)
class Options:
    subjects: int
    audience: int
    backends: list[str]
    duration: int
    postgres_url: str
    stream_checks: int
    workers: int | None
    seed: int
    wrk: str
    python_loop_s: float  # bench.machine, measured before the run


def log(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


def run_async(factory: Callable[[], Awaitable[T]]) -> T:
    """Run one coroutine on a fresh event loop (uvloop when installed, as the client side of the stream)."""
    try:
        import uvloop

        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:
        loop_factory = None

    async def wrapper() -> T:
        return await factory()

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(wrapper())


# --- databases ----------------------------------------------------------------------------------------------


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


async def _pg_admin(admin_url: str, sql: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(admin_url), timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


class Database:
    """A fresh database for one backend; `drop()` removes it."""

    def __init__(self, backend: str, workdir: Path, admin_url: str) -> None:
        self.backend = backend
        self.admin_url = admin_url
        self.name = f"bench_{os.getpid()}_{secrets.token_hex(3)}"
        if backend == "sqlite":
            self.url = f"sqlite://{workdir / 'bench.sqlite3'}"
        else:
            self.url = with_database(admin_url, self.name)

    def create(self) -> None:
        if self.backend == "postgres":
            try:
                run_async(lambda: _pg_admin(self.admin_url, f'CREATE DATABASE "{self.name}"'))
            except (OSError, asyncpg.PostgresError) as exc:
                raise BenchError(f"PostgreSQL at {self.admin_url} is not usable: {exc!r}") from exc

    def drop(self) -> None:
        if self.backend == "postgres":
            run_async(lambda: _pg_admin(self.admin_url, f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))


async def create_bench_client(database_url: str, scopes: str = SCOPES) -> tuple[str, str]:
    from tortoise import Tortoise

    from server.auth.clients import create_client
    from server.db import tortoise_config

    await Tortoise.init(config=tortoise_config(database_url))
    try:
        client = await create_client("bench", scopes)
    finally:
        await Tortoise.close_connections()
    return client.client_id, client.client_secret


# --- the server under test ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class BenchServer:
    """`python -m bench.serve` (`bench.app`) as a subprocess (1 uvicorn worker), settings in the environment."""

    def __init__(self, database_url: str, secret_key: str, workdir: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://{HOST}:{self.port}"
        self.log_path = workdir / "server.log"
        self.env = {
            **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SECRET_KEY", "DATA_DIR")},
            "PYTHONPATH": str(REPO),
            "DATABASE_URL": database_url,
            "SECRET_KEY": secret_key,
            "DATA_DIR": str(workdir / "data"),
            "SIGNING_KEYS_DIR": str(workdir / "signing-keys"),
            "PUBLIC_URL": self.base_url,
            "POLICY_DIR": str(POLICY_DIR),
            "HOST": HOST,
            "PORT": str(self.port),
            "LOG_LEVEL": "WARNING",
            "ENVIRONMENT": "production",
            "TOKEN_LIFETIME_SECONDS": "86400",
            # The seeded events wait in `log_queue`: no sequencing in the background while measuring.
            "CHECKPOINT_INTERVAL_SECONDS": "0",
        }
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        with self.log_path.open("wb") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bench.serve", "--host", HOST, "--port", str(self.port)],
                cwd=self.workdir,  # no stray .env is read; settings come from env only
                env=self.env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.base_url, timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise BenchError(f"the bench server exited with {self.process.returncode}:\n{self.log_tail()}")
                try:
                    if client.get("/readyz").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        raise BenchError(f"the bench server was not ready within {timeout:.0f} s:\n{self.log_tail()}")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def get_token(base_url: str, client_id: str, client_secret: str) -> str:
    basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
    response = httpx.post(
        f"{base_url}/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
        timeout=10,
    )
    if response.status_code != 200:
        raise BenchError(f"token request failed: {response.status_code} {response.text[:300]}")
    return str(response.json()["access_token"])


# --- questions ----------------------------------------------------------------------------------------------


def questions(rng: random.Random, subjects: int, count: int) -> list[tuple[str, str, str]]:
    """Random (ref, purpose, channel): known refs and `UNKNOWN_SHARE` unknown ones, over the 9 pairs."""
    out = []
    for _ in range(count):
        if rng.random() < UNKNOWN_SHARE or subjects == 0:
            ref = f"{UNKNOWN_PREFIX}{rng.randrange(10**8):08d}"
        else:
            ref = ref_of("mixed", rng.randrange(subjects))
        purpose, channel = rng.choice(PAIRS)
        out.append((ref, purpose, channel))
    return out


def check_path(ref: str, purpose: str, channel: str) -> str:
    return f"/v1/consents/check?subject={quote(ref, safe='')}&purpose={purpose}&channel={channel}"


def check_line(ref: str, purpose: str, channel: str) -> bytes:
    return orjson.dumps({"subject": ref, "purpose": purpose, "channel": channel})


# --- correctness pass ---------------------------------------------------------------------------------------


def verify_answers(base_url: str, token: str, seeded: SeedResult, rng: random.Random) -> dict[str, Any]:
    """Seeded subjects read back through the real API must answer the reason the seed built them for."""
    expected = list(seeded.expected)
    expected += [(f"{UNKNOWN_PREFIX}{i:08d}", p, c, "unknown_subject") for i, (p, c) in enumerate(PAIRS * 20)]
    headers = {"Authorization": f"Bearer {token}"}
    mismatches: list[str] = []
    with httpx.Client(base_url=base_url, headers=headers, timeout=60) as client:
        for start in range(0, len(expected), BATCH_SIZE):
            part = expected[start : start + BATCH_SIZE]
            body = {"checks": [{"subject": r, "purpose": p, "channel": c} for r, p, c, _ in part]}
            response = client.post("/v1/consents/check", content=orjson.dumps(body), headers=_JSON)
            if response.status_code != 200:
                raise BenchError(f"batch check failed: {response.status_code} {response.text[:300]}")
            for (ref, purpose, channel, reason), got in zip(part, response.json()["results"], strict=True):
                if got.get("reason") != reason:
                    mismatches.append(f"batch {ref} {purpose}/{channel}: expected {reason}, got {got}")
        for ref, purpose, channel, reason in rng.sample(expected, min(40, len(expected))):
            response = client.get(check_path(ref, purpose, channel))
            got = response.json() if response.status_code == 200 else {"status_code": response.status_code}
            if got.get("reason") != reason:
                mismatches.append(f"single {ref} {purpose}/{channel}: expected {reason}, got {got}")
    if mismatches:
        raise BenchError(f"{len(mismatches)} answers differ from the seeded data:\n" + "\n".join(mismatches[:10]))
    reasons: dict[str, int] = {}
    for *_, reason in expected:
        reasons[reason] = reasons.get(reason, 0) + 1
    return {"checked": len(expected), "reasons": reasons}


# --- single check vs baseline (wrk) -------------------------------------------------------------------------


def run_wrk(wrk: str, url: str, script: Path, paths: Path, token: str, seconds: int) -> dict[str, Any]:
    command = [
        wrk,
        f"-t{WRK_THREADS}",
        f"-c{WRK_CONNECTIONS}",
        f"-d{seconds}s",
        "--latency",
        "--timeout",
        "5s",
        "-s",
        str(script),
        url,
        "--",
        str(paths),
        token,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=False)
    match = re.search(r"^BENCHJSON (\{.*\})$", done.stdout, re.MULTILINE)
    if done.returncode != 0 or match is None:
        raise BenchError(f"wrk failed ({done.returncode}):\n{done.stdout[-1500:]}\n{done.stderr[-1500:]}")
    data: dict[str, Any] = json.loads(match.group(1))
    data["rps"] = data["requests"] / (data["duration_us"] / 1e6)
    data["errors"] = sum(data[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors"))
    data["errors"] += data["timeouts"]
    return data


def single_checks(
    opts: Options, server: BenchServer, token: str, seeded: SeedResult, rng: random.Random, workdir: Path
) -> dict[str, Any]:
    script = workdir / "random_paths.lua"
    script.write_text(WRK_SCRIPT)
    check_file = workdir / "check_paths.txt"
    check_file.write_text("\n".join(check_path(*q) for q in questions(rng, opts.subjects, QUESTION_FILE_LINES)) + "\n")
    ids = seeded.subject_ids
    baseline_file = workdir / "baseline_paths.txt"
    baseline_file.write_text("\n".join(f"{BASELINE_PATH}?id={rng.choice(ids)}" for _ in range(QUESTION_FILE_LINES)))
    files = {"baseline": baseline_file, "check": check_file}
    for name, path in files.items():
        run_wrk(opts.wrk, server.base_url, script, path, token, WARMUP_SECONDS)
        log(f"  warm-up {name} done")
    runs: dict[str, list[dict[str, Any]]] = {"baseline": [], "check": []}
    for round_ in (1, 2):
        for name in ("baseline", "check"):
            data = run_wrk(opts.wrk, server.base_url, script, files[name], token, opts.duration)
            runs[name].append(data)
            log(
                f"  {name} run {round_}: {data['rps']:,.0f} req/s, p50 {data['p50_us'] / 1000:.2f} ms, "
                f"p99 {data['p99_us'] / 1000:.2f} ms, errors {data['errors']}"
            )
    for name, items in runs.items():
        for data in items:
            if data["errors"]:
                raise BenchError(f"{name}: {data['errors']} failed requests during a wrk run: {data}")
    best = {name: max(items, key=lambda d: d["rps"]) for name, items in runs.items()}
    return {
        "baseline": best["baseline"],
        "check": best["check"],
        "ratio": best["check"]["rps"] / best["baseline"]["rps"],
        "runs": runs,
    }


# --- batch --------------------------------------------------------------------------------------------------


def batch_checks(opts: Options, server: BenchServer, token: str, rng: random.Random) -> dict[str, Any]:
    items = questions(rng, opts.subjects, BATCH_SIZE)
    body = orjson.dumps({"checks": [{"subject": r, "purpose": p, "channel": c} for r, p, c in items]})
    headers = {"Authorization": f"Bearer {token}", **_JSON}
    timings = []
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=120) as client:
        for attempt in range(BATCH_RUNS + 1):
            started = time.perf_counter()
            response = client.post("/v1/consents/check", content=body)
            payload = response.content
            elapsed = (time.perf_counter() - started) * 1000
            if response.status_code != 200:
                raise BenchError(f"batch failed: {response.status_code} {response.text[:300]}")
            if len(orjson.loads(payload)["results"]) != BATCH_SIZE:
                raise BenchError("batch: the answer does not hold one result per check")
            if attempt:  # the first one warms up
                timings.append(elapsed)
    return {"median_ms": statistics.median(timings), "runs_ms": timings, "body_bytes": len(body)}


# --- stream (duplex) ----------------------------------------------------------------------------------------


class RssSampler(threading.Thread):
    """Samples the server's RSS every 50 ms until stopped (or `limit_s` passed): the server process and its
    children (the stream's worker processes: server.consent.stream_workers), summed."""

    def __init__(self, pid: int, limit_s: float) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.limit_s = limit_s
        rss, shared = self._memory()
        self.before = rss
        self.peak = self.before
        # File-backed resident pages (psutil's `shared`: RssFile + RssShmem): on SQLite, the database pages the bulk
        # connections map (server.consent.reader, BULK_MMAP_MB). The rest of RSS is the processes' own memory.
        self.file_before = shared
        self.file_peak = self.file_before
        self.own_before = self.before - self.file_before
        self.own_peak = self.own_before
        self.samples = 0
        self.stopped = threading.Event()
        self.workers = len(self.process.children(recursive=True))
        self.cpu_before = self._cpu()

    def _processes(self) -> list[psutil.Process]:
        return [self.process, *self.process.children(recursive=True)]

    def _memory(self) -> tuple[int, int]:
        rss = shared = 0
        for process in self._processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                memory = process.memory_info()
                rss, shared = rss + int(memory.rss), shared + int(memory.shared)
        return rss, shared

    def _cpu(self) -> float:
        total = 0.0
        for process in self._processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                times = process.cpu_times()
                total += float(times.user + times.system)
        return total

    def cpu_seconds(self) -> float:
        """CPU time the server (with its worker processes) used since the sampler was created."""
        return self._cpu() - self.cpu_before

    def run(self) -> None:
        deadline = time.monotonic() + self.limit_s
        while not self.stopped.is_set() and time.monotonic() < deadline:
            try:
                rss, shared = self._memory()
            except psutil.Error:
                return
            self.peak = max(self.peak, rss)
            self.file_peak = max(self.file_peak, shared)
            self.own_peak = max(self.own_peak, rss - shared)
            self.samples += 1
            self.stopped.wait(RSS_INTERVAL_S)


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    status_line = await reader.readline()
    parts = status_line.decode("latin-1").split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise BenchError(f"stream: bad status line {status_line!r}")
    headers: dict[str, str] = {}
    for _ in range(200):
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


async def duplex_stream(base_url: str, token: str, chunks: list[bytes], limit_s: float) -> dict[str, Any]:
    """POST the NDJSON chunks with chunked transfer-encoding while reading the answers on the same socket."""
    parts = urlsplit(base_url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port, limit=8 * 1024 * 1024)
    head = (
        "POST /v1/consents/check/stream HTTP/1.1\r\n"
        f"Host: {parts.netloc}\r\n"
        f"Authorization: Bearer {token}\r\n"
        "Content-Type: application/x-ndjson\r\n"
        "Accept: application/x-ndjson\r\n"
        "Transfer-Encoding: chunked\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    started = time.perf_counter()
    first_answer: list[float] = []

    async def send() -> None:
        writer.write(head)
        for chunk in chunks:
            writer.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async def receive() -> tuple[int, int, int]:
        status, headers = await _read_head(reader)
        if status != 200 or headers.get("transfer-encoding", "").lower() != "chunked":
            body = await reader.read(4096)
            raise BenchError(f"stream: HTTP {status} {headers}: {body[:300]!r}")
        lines = errors = size_total = 0
        for _ in range(10**8):
            size_line = await reader.readline()
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                await reader.readline()
                break
            data = await reader.readexactly(size)
            await reader.readexactly(2)
            if not first_answer:
                first_answer.append(time.perf_counter() - started)
            lines += data.count(b"\n")
            errors += data.count(b'"error"')
            size_total += size
        return lines, errors, size_total

    sender = asyncio.create_task(send())
    try:
        lines, errors, size_total = await asyncio.wait_for(receive(), limit_s)
        await asyncio.wait_for(sender, 10)
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)  # a reset while sending is reported by receive()
        writer.close()
    elapsed = time.perf_counter() - started
    return {
        "lines": lines,
        "errors": errors,
        "response_bytes": size_total,
        "seconds": elapsed,
        "first_answer_s": first_answer[0] if first_answer else None,
    }


def stream_checks(
    opts: Options, server: BenchServer, token: str, rng: random.Random, warmup: int = 0
) -> dict[str, Any]:
    """`opts.stream_checks` checks in one stream, after a stream of `warmup` checks on the same server (whose
    figure is kept beside). The RSS growth counts from before the warm-up; the CPU, only the measured stream."""
    pool = [check_line(*q) + b"\n" for q in questions(rng, opts.subjects, QUESTION_FILE_LINES)]

    def body(count: int) -> list[bytes]:
        chunks = []
        while count > 0:
            take = min(STREAM_LINES_PER_CHUNK, count)
            chunks.append(b"".join(rng.choices(pool, k=take)))
            count -= take
        return chunks

    timeout = max(120.0, opts.stream_checks / 5_000)
    sampler = RssSampler(server.pid, 2 * timeout + 60)
    sampler.start()
    warm: dict[str, Any] = {}
    try:
        if warmup:
            warm_chunks = body(warmup)
            warm = run_async(lambda: duplex_stream(server.base_url, token, warm_chunks, timeout))
            if warm["lines"] != warmup or warm["errors"]:
                raise BenchError(f"stream warm-up: {warmup} checks sent, {warm['lines']} answers")
        chunks = body(opts.stream_checks)
        cpu_before = sampler.cpu_seconds()
        result = run_async(lambda: duplex_stream(server.base_url, token, chunks, timeout))
        cpu = sampler.cpu_seconds() - cpu_before
    finally:
        sampler.stopped.set()
        sampler.join(timeout=5)
    result["server_cpu_s"] = cpu
    result["warmup_checks"] = warmup
    result["warmup_checks_per_s"] = warmup / warm["seconds"] if warmup else None
    result["server_cpu_share"] = result["server_cpu_s"] / result["seconds"]  # 1.0 = one core busy all along
    if result["lines"] != opts.stream_checks or result["errors"]:
        raise BenchError(
            f"stream: {opts.stream_checks} checks sent, {result['lines']} answers, {result['errors']} errors"
        )
    result["checks_per_s"] = opts.stream_checks / result["seconds"]
    result["request_bytes"] = sum(len(c) for c in chunks)
    result["rss_before_mb"] = sampler.before / 2**20
    result["rss_peak_mb"] = sampler.peak / 2**20
    result["rss_growth_mb"] = (sampler.peak - sampler.before) / 2**20
    result["rss_file_growth_mb"] = (sampler.file_peak - sampler.file_before) / 2**20
    result["rss_own_growth_mb"] = (sampler.own_peak - sampler.own_before) / 2**20
    result["rss_samples"] = sampler.samples
    result["worker_processes"] = sampler.workers
    return result


# --- audience export ----------------------------------------------------------------------------------------


def audience_export(server: BenchServer, token: str, expected_rows: int) -> dict[str, Any]:
    purpose, channel = AUDIENCE
    runs = []
    with httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=600) as client:
        for _ in range(AUDIENCE_RUNS):
            rows = size = 0
            started = time.perf_counter()
            with client.stream("GET", f"/v1/audiences/{purpose}/{channel}") as response:
                if response.status_code != 200:
                    response.read()
                    raise BenchError(f"audience: HTTP {response.status_code} {response.text[:300]}")
                for data in response.iter_raw(1 << 20):
                    rows += data.count(b"\n")
                    size += len(data)
            seconds = time.perf_counter() - started
            runs.append({"rows": rows, "bytes": size, "seconds": seconds, "rows_per_s": rows / seconds})
            log(f"  export: {rows:,} rows in {seconds:.2f} s ({rows / seconds:,.0f} rows/s)")
    if any(run["rows"] != expected_rows for run in runs):
        raise BenchError(f"audience: expected {expected_rows:,} rows, got {[r['rows'] for r in runs]}")
    best = max(runs, key=lambda r: r["rows_per_s"])
    return {**best, "pair": f"{purpose}/{channel}", "runs": runs}


def change_feed(server: BenchServer, token: str, writer_token: str, subjects: int) -> dict[str, Any]:
    """`FEED_CHANGES` withdrawals of audience subjects recorded through the API, then the change feed polled from a
    cursor taken just before them: every withdrawn ref must come back as not allowed."""
    purpose, channel = AUDIENCE
    path = f"/v1/audiences/{purpose}/{channel}"
    withdrawn = {ref_of("audience", index) for index in range(FEED_CHANGES)}
    with httpx.Client(base_url=server.base_url, timeout=600) as client:
        reader = {"Authorization": f"Bearer {token}"}
        now = client.get(path, params={"since": datetime.now(UTC).isoformat()}, headers=reader)
        if now.status_code != 200:
            raise BenchError(f"change feed: HTTP {now.status_code} {now.text[:300]}")
        cursor = now.headers["x-next-since"]
        body = {"policy": {"document": "privacy-policy", "version": "2", "lang": "fr"}}
        writer = {"Authorization": f"Bearer {writer_token}"}
        started = time.perf_counter()
        for ref in sorted(withdrawn):
            decisions = [{"purpose": purpose, "channel": channel, "action": "withdraw"}]
            answer = client.post(f"/v1/subjects/{ref}/consents", json={**body, "decisions": decisions}, headers=writer)
            if answer.status_code != 201:
                raise BenchError(f"change feed: recording a withdrawal: HTTP {answer.status_code} {answer.text[:300]}")
        recorded_s = time.perf_counter() - started
        runs = []
        for _ in range(FEED_RUNS):
            started = time.perf_counter()
            poll = client.get(path, params={"since": cursor}, headers=reader)
            seconds = time.perf_counter() - started
            if poll.status_code != 200:
                raise BenchError(f"change feed: HTTP {poll.status_code} {poll.text[:300]}")
            lines = [orjson.loads(line) for line in poll.content.splitlines()]
            denied = {line["ref"] for line in lines if not line["allowed"]}
            if not withdrawn <= denied:
                raise BenchError(f"change feed: {len(withdrawn - denied)} withdrawals missing from the poll")
            runs.append({"lines": len(lines), "seconds": seconds})
            log(f"  change feed: {len(lines):,} lines in {seconds * 1000:.1f} ms")
    best = min(runs, key=lambda r: r["seconds"])
    return {**best, "changes": FEED_CHANGES, "subjects": subjects, "recorded_s": recorded_s, "runs": runs}


# --- one backend --------------------------------------------------------------------------------------------


@dataclass
class BackendReport:
    backend: str
    figures: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def run_backend(backend: str, opts: Options) -> BackendReport:
    report = BackendReport(backend)
    rng = random.Random(opts.seed)
    secret_key = secrets.token_urlsafe(48)
    with tempfile.TemporaryDirectory(prefix=f"bench-{backend}-") as tmp:
        workdir = Path(tmp)
        database = Database(backend, workdir, opts.postgres_url)
        server: BenchServer | None = None
        created = False
        try:
            log(f"{backend}: creating a fresh database")
            database.create()
            created = True
            run_async(lambda: prepare_database(database.url, POLICY_DIR))
            client_id, client_secret = run_async(lambda: create_bench_client(database.url))
            writer_id, writer_secret = run_async(lambda: create_bench_client(database.url, WRITER_SCOPES))
            log(f"{backend}: seeding {opts.subjects:,} subjects")
            seeded = run_async(
                lambda: seed_database(
                    database.url, secret_key, opts.subjects, kind="mixed", seed=opts.seed, workers=opts.workers
                )
            )
            report.figures["seed"] = _seed_summary(seeded)
            log(
                f"{backend}: seeded {seeded.subjects:,} subjects, {seeded.events:,} events, "
                f"{seeded.states:,} states in {seeded.seconds:.1f} s"
            )
            server = BenchServer(database.url, secret_key, workdir)
            server.start()
            token = get_token(server.base_url, client_id, client_secret)
            report.figures["verified"] = verify_answers(server.base_url, token, seeded, rng)
            log(f"{backend}: {report.figures['verified']['checked']:,} seeded answers read back correctly")
            log(f"{backend}: single check vs baseline (wrk, {opts.duration} s per run)")
            report.figures["single"] = single_checks(opts, server, token, seeded, rng, workdir)
            log(f"{backend}: batch of {BATCH_SIZE:,}")
            report.figures["batch"] = batch_checks(opts, server, token, rng)
            log(f"{backend}:   median {report.figures['batch']['median_ms']:.1f} ms")
            log(f"{backend}: stream of {opts.stream_checks:,} checks, after a warm-up stream of {STREAM_WARMUP:,}")
            stream = stream_checks(opts, server, token, rng, warmup=STREAM_WARMUP)
            report.figures["stream"] = stream
            log(
                f"{backend}:   warm-up {stream['warmup_checks_per_s']:,.0f} checks/s; then "
                f"{stream['checks_per_s']:,.0f} checks/s, RSS +{stream['rss_growth_mb']:.1f} MB "
                f"(own +{stream['rss_own_growth_mb']:.1f}, file-backed +{stream['rss_file_growth_mb']:.1f}; "
                f"peak {stream['rss_peak_mb']:.1f} MB), server CPU {stream['server_cpu_share']:.0%} of a core "
                f"({stream['worker_processes']} child processes counted in both)"
            )
            if opts.audience > 0:
                log(f"{backend}: seeding {opts.audience:,} audience subjects into the same database")
                audience_seed = run_async(
                    lambda: seed_database(
                        database.url,
                        secret_key,
                        opts.audience,
                        kind="audience",
                        seed=opts.seed,
                        workers=opts.workers,
                        sample=0,
                    )
                )
                report.figures["audience_seed"] = _seed_summary(audience_seed)
                log(f"{backend}:   seeded in {audience_seed.seconds:.1f} s")
                expected = opts.audience + seeded.allowed.get("/".join(AUDIENCE), 0)
                report.figures["audience"] = audience_export(server, token, expected)
                log(f"{backend}: change feed after {FEED_CHANGES:,} withdrawals")
                writer_token = get_token(server.base_url, writer_id, writer_secret)
                total = seeded.subjects + audience_seed.subjects
                report.figures["feed"] = change_feed(server, token, writer_token, total)
        except BenchError as exc:
            report.error = str(exc)
            log(f"{backend}: FAILED: {exc}")
        except Exception as exc:  # report and go on with the other backend
            report.error = f"{exc!r}\n{traceback.format_exc()}"
            log(f"{backend}: FAILED: {report.error}")
        finally:
            if server is not None:
                server.stop()
                if report.error:
                    log(f"{backend}: last lines of the server log:\n{server.log_tail()}")
            if created:
                try:
                    database.drop()
                except Exception as exc:  # the drop must not hide the result
                    log(f"{backend}: could not drop database {database.name}: {exc!r}")
    return report


def _seed_summary(seeded: SeedResult) -> dict[str, Any]:
    return {
        "subjects": seeded.subjects,
        "events": seeded.events,
        "states": seeded.states,
        "seconds": seeded.seconds,
        "outcomes": seeded.outcomes,
    }


# --- report -------------------------------------------------------------------------------------------------


def _verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("ok" if ok else "MISSED")


def table_rows(report: BackendReport) -> list[tuple[str, str, str, str]]:
    """(figure, value, target, verdict) for one backend."""
    f = report.figures
    rows: list[tuple[str, str, str, str]] = []

    def add(figure: str, value: str, target: str = "", ok: bool | None = None) -> None:
        rows.append((figure, value, target, _verdict(ok) if target else ""))

    if "seed" in f:
        seed = f["seed"]
        add("seeded subjects / events", f"{seed['subjects']:,} / {seed['events']:,} in {seed['seconds']:.1f} s")
    if "verified" in f:
        add("answers read back and correct", f"{f['verified']['checked']:,}")
    if "single" in f:
        single = f["single"]
        check, base = single["check"], single["baseline"]
        add("single check req/s", f"{check['rps']:,.0f}")
        add("baseline (1 PK lookup) req/s", f"{base['rps']:,.0f}")
        add("check/baseline ratio", f"{single['ratio']:.2f}", ">= 1.0", single["ratio"] >= 1.0)
        add("check p50 latency", f"{check['p50_us'] / 1000:.2f} ms")
        add("check p99 latency", f"{check['p99_us'] / 1000:.2f} ms", "<= 15 ms", check["p99_us"] <= 15_000)
        add("baseline p50 / p99", f"{base['p50_us'] / 1000:.2f} / {base['p99_us'] / 1000:.2f} ms")
    if "batch" in f:
        ms = f["batch"]["median_ms"]
        add(f"batch of {BATCH_SIZE:,} (median of {BATCH_RUNS})", f"{ms:.1f} ms", "<= 150 ms", ms <= 150)
    if "stream" in f:
        stream = f["stream"]
        rate, own = stream["checks_per_s"], stream["rss_own_growth_mb"]
        add("stream checks/s", f"{rate:,.0f}", ">= 200,000", rate >= 200_000)
        if stream.get("warmup_checks"):
            warm = f"{stream['warmup_checks']:,} checks at {stream['warmup_checks_per_s']:,.0f} checks/s"
            add("  after a warm-up stream of", warm)
        add("stream peak RSS growth (own memory)", f"{own:.1f} MB", "<= 50 MB", own <= 50)
        add("  processes counted", f"the server and {stream['worker_processes']} child process(es)")
        add("  file-backed pages (SQLite: the mapped file)", f"{stream['rss_file_growth_mb']:.1f} MB")
        add("  RSS in all", f"{stream['rss_growth_mb']:.1f} MB")
    if "audience" in f:
        rate, rows_, secs = f["audience"]["rows_per_s"], f["audience"]["rows"], f["audience"]["seconds"]
        add(f"audience export rows/s ({AUDIENCE[0]}/{AUDIENCE[1]})", f"{rate:,.0f}", ">= 300,000", rate >= 300_000)
        add("audience rows exported", f"{rows_:,} in {secs:.2f} s")
    if "feed" in f:
        feed = f["feed"]
        add(
            f"change feed after {feed['changes']:,} withdrawals",
            f"{feed['lines']:,} lines in {feed['seconds'] * 1000:.1f} ms ({feed['subjects']:,} subjects)",
        )
        rate = feed["changes"] / feed["recorded_s"]
        add("  the withdrawals recorded, one request each", f"{rate:,.0f} a second ({feed['recorded_s']:.1f} s)")
    return rows


def print_table(reports: list[BackendReport], opts: Options) -> None:
    loop, http = event_loop_and_parser()
    print()
    print(
        f"Consent-check benchmark: {opts.subjects:,} subjects, audience +{opts.audience:,}, wrk -t{WRK_THREADS} "
        f"-c{WRK_CONNECTIONS} -d{opts.duration}s, stream {opts.stream_checks:,} checks; uvicorn 1 worker, "
        f"{loop}/{http}."
    )
    print(
        f"This machine has {os.cpu_count()} CPU core(s), shared by the server, wrk and the client: absolute figures "
        "vary between machines; the ratio check/baseline, measured in the same run, is the comparable one."
    )
    print(describe(opts.python_loop_s))
    header = ("backend", "figure", "value", "target", "")
    lines = [header]
    for report in reports:
        if report.error:
            lines.append((report.backend, "FAILED", report.error.splitlines()[0][:80], "", ""))
        for row in table_rows(report):
            lines.append((report.backend, *row))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for n, line in enumerate(lines):
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def save_results(reports: list[BackendReport], opts: Options) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"check_bench-{stamp}.json"
    loop, http = event_loop_and_parser()
    data = {
        "at": stamp,
        "options": {k: v for k, v in vars(opts).items() if k != "postgres_url"},
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "loop": loop,
            "http": http,
            "python_loop_s": opts.python_loop_s,
        },
        "targets": TARGETS,
        "backends": {r.backend: {"error": r.error, **r.figures} for r in reports},
    }
    path.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
    return path


def find_wrk() -> str | None:
    return shutil.which("wrk") or ("/usr/bin/wrk" if Path("/usr/bin/wrk").is_file() else None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.check_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", type=int, default=100_000, help="mixed-state subjects (default 100,000)")
    parser.add_argument("--audience", type=int, default=1_000_000, help="audience subjects (default 1,000,000)")
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test"),
        help="server on which a fresh database is created and dropped",
    )
    parser.add_argument("--stream-checks", type=int, default=1_000_000, help="checks sent through the stream")
    parser.add_argument("--workers", type=int, default=None, help="seed worker processes (default: CPUs, max 4)")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the data and the questions")
    args = parser.parse_args(argv)
    if args.subjects < 1 or args.duration < 1 or args.stream_checks < 1 or args.audience < 0:
        parser.error("--subjects, --duration and --stream-checks must be positive, --audience not negative")
    wrk = find_wrk()
    if wrk is None:
        print("wrk is not installed: install it with `apt-get install -y wrk` (the single-check benchmark needs it).")
        return 2
    opts = Options(
        subjects=args.subjects,
        audience=args.audience,
        backends=["sqlite", "postgres"] if args.backend == "both" else [args.backend],
        duration=args.duration,
        postgres_url=args.postgres_url,
        stream_checks=args.stream_checks,
        workers=args.workers,
        seed=args.seed,
        wrk=wrk,
        python_loop_s=python_loop_seconds(),
    )
    started = time.monotonic()
    reports = [run_backend(backend, opts) for backend in opts.backends]
    print_table(reports, opts)
    path = save_results(reports, opts)
    print(f"\nSaved {path.relative_to(REPO)} ({time.monotonic() - started:.0f} s in all).")
    return 1 if any(r.error for r in reports) else 0


if __name__ == "__main__":
    raise SystemExit(main())
