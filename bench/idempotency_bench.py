"""What an `Idempotency-Key` costs a write: the real server (`python -m server serve`) on a fresh database takes the
same API writes (one new subject each, one decision) with and without a key, alternating blocks so that both see the
same machine, one at a time and at 16 connections; printed: writes a second, and the server process's CPU
milliseconds a write (user + system, from /proc: the figure that varies least on a shared machine).

    python -m bench.idempotency_bench [--backend sqlite|postgres|both] [--writes 400] \
                                      [--postgres-url postgres://postgres@127.0.0.1:5432/test]

Everything runs on 127.0.0.1; a PostgreSQL database `bench_idem_<hex>` is created and dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

from bench.machine import python_loop_seconds

REPO = Path(__file__).resolve().parent.parent
BODY = {
    "policy": {"document": "privacy-policy", "version": "2", "lang": "en"},
    "decisions": [{"purpose": "offers", "channel": "email", "action": "grant"}],
}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "server", *args], env=env, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)}: {done.stderr}")
    return done.stdout


async def _writes(base: str, token: str, count: int, concurrency: int, keyed: bool) -> float:
    """Seconds for `count` writes on `concurrency` connections."""
    queue = list(range(count))

    async def worker(http: httpx.AsyncClient) -> None:
        while queue:
            queue.pop()
            headers = {"Idempotency-Key": str(uuid.uuid4())} if keyed else {}
            answer = await http.post(f"/v1/subjects/b-{uuid.uuid4().hex}/consents", json=BODY, headers=headers)
            if answer.status_code != 201:
                raise SystemExit(f"write refused: {answer.status_code} {answer.text}")

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {token}"}, limits=limits, timeout=60
    ) as http:
        started = time.perf_counter()
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
        return time.perf_counter() - started


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measure(database_url: str, writes: int, label: str) -> None:
    with tempfile.TemporaryDirectory() as data:
        port = _port()
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "DATA_DIR": data,
            "SECRET_KEY": secrets.token_urlsafe(32),
            "PUBLIC_URL": f"http://127.0.0.1:{port}",
            "PORT": str(port),
            "LOG_LEVEL": "WARNING",
            "CHECKPOINT_INTERVAL_SECONDS": "0",
            "STREAM_WORKERS": "0",
        }
        _run(env, "migrate")
        _run(env, "policies", "sync")
        client = json.loads(_run(env, "clients", "create", "--name", "bench", "--scopes", "consent:write"))
        server = subprocess.Popen([sys.executable, "-m", "server", "serve"], env=env, cwd=REPO)
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(100):
                try:
                    if httpx.get(f"{base}/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            token = httpx.post(
                f"{base}/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=(client["client_id"], client["client_secret"]),
            ).json()["access_token"]
            asyncio.run(_writes(base, token, 50, 4, True))  # warm-up
            for concurrency in (1, 16):
                seconds = {False: 0.0, True: 0.0}
                cpu = {False: 0.0, True: 0.0}
                for _ in range(4):  # alternating blocks
                    for keyed in (False, True):
                        before = _cpu_s(server.pid)
                        seconds[keyed] += asyncio.run(_writes(base, token, writes // 4, concurrency, keyed))
                        cpu[keyed] += _cpu_s(server.pid) - before
                plain, keyed_s = (writes / seconds[False], writes / seconds[True])
                plain_cpu, keyed_cpu = (1000 * cpu[False] / writes, 1000 * cpu[True] / writes)
                print(
                    f"{label} c={concurrency:2d}: without key {plain:6.1f}/s, {plain_cpu:5.2f} ms CPU a write; "
                    f"with key {keyed_s:6.1f}/s, {keyed_cpu:5.2f} ms CPU a write; "
                    f"cost {keyed_cpu - plain_cpu:+.2f} ms CPU a write ({keyed_s / plain - 1:+.0%} throughput)"
                )
        finally:
            server.terminate()
            server.wait(timeout=20)


async def _pg(admin_url: str, statement: str) -> None:
    parts = urlsplit(admin_url)
    conn = await asyncpg.connect(urlunsplit(("postgresql", parts.netloc, parts.path, parts.query, "")))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--writes", type=int, default=400)
    parser.add_argument(
        "--postgres-url", default=os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")
    )
    args = parser.parse_args()
    print(f"python loop: {python_loop_seconds():.3f} s")
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as directory:
            _measure(f"sqlite://{directory}/bench.sqlite3", args.writes, "sqlite  ")
    if args.backend in ("postgres", "both"):
        name = f"bench_idem_{secrets.token_hex(4)}"
        asyncio.run(_pg(args.postgres_url, f'CREATE DATABASE "{name}"'))
        try:
            parts = urlsplit(args.postgres_url)
            _measure(urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, "")), args.writes, "postgres")
        finally:
            asyncio.run(_pg(args.postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
