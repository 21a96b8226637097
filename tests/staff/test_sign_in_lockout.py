"""Staff sign-in under attack, against a real server over HTTP (the console's form, CSRF token included): parallel
wrong passwords lock the account (they were counted read-then-write, and 74 at once never locked it), failures
from one network lock it out for every account, the message never changes, and a flood of sign-ins leaves consent
checks answering (argon2 runs off the event loop, on a pool of its own)."""

from __future__ import annotations

import asyncio
import json
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from tortoise import Tortoise

from server.db import tortoise_config
from server.staff.accounts import create_staff
from tests.databases import run_sync
from tests.helpers.processes import Server, access_token, cli, server_env, wait_ready
from tests.helpers.sql import sql
from tests.ports import free_port

PASSWORD = "correct horse battery staple"
GENERIC = "The email or the password is not right, or the account is locked."
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
# The server with argon2 at its lowest cost, as the rest of the suite hashes (tests/conftest.py): the lockout is
# about counting, not hashing. The flood test keeps the real cost.
CHEAP = (
    "import sys; from argon2 import PasswordHasher; from server.staff import accounts; "
    "accounts._hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1); "
    "from server.cli import main; sys.exit(main(['serve']))"
)


def _start(env: dict[str, str], cwd: Path, name: str, *, cheap: bool) -> Server:
    log = cwd / f"{name}.log"
    log_file = log.open("wb")
    command = [sys.executable, "-c", CHEAP] if cheap else [sys.executable, "-m", "server", "serve"]
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=log_file, stderr=subprocess.STDOUT)
    server = Server(process, f"http://127.0.0.1:{env['PORT']}", log, log_file)
    wait_ready(server.base_url, process, server.output, timeout=30)
    return server


@pytest.fixture
def env(database_url: str, tmp_path: Path) -> dict[str, str]:
    return server_env(database_url, tmp_path, free_port())


def _accounts(database_url: str, emails: list[str]) -> None:
    """Local accounts with PASSWORD, hashed by this process's hasher (the lowest cost, tests/conftest.py)."""

    async def work() -> None:
        await Tortoise.init(config=tortoise_config(database_url))
        try:
            for email in emails:
                await create_staff(email, "Agent", "agent", PASSWORD)
        finally:
            await Tortoise.close_connections()

    run_sync(work())


async def _form(http: httpx.AsyncClient) -> str:
    page = await http.get("/console/login")
    token = _CSRF.search(page.text)
    assert page.status_code == 200 and token, page.text[:300]
    return token.group(1)


async def _sign_in(http: httpx.AsyncClient, csrf: str, email: str, password: str) -> httpx.Response:
    return await http.post(
        "/console/login", data={"email": email, "password": password, "csrf": csrf, "next": "/console"}
    )


def _refused(answer: httpx.Response) -> bool:
    return answer.status_code == 400 and GENERIC in answer.text and "desk_session" not in answer.cookies


def _throttle(database_url: str, key: str) -> tuple[Any, ...]:
    rows = sql(database_url, query=f"SELECT failures, locked_until FROM sign_in_throttles WHERE key = '{key}'")
    assert len(rows) == 1, rows
    return rows[0]


def test_74_parallel_wrong_passwords_lock_the_account(database_url: str, env: dict[str, str], tmp_path: Path) -> None:
    _accounts(database_url, ["target@staff.example"])
    server = _start({**env, "SIGNIN_NETWORK_MAX_FAILURES": "100000"}, tmp_path, "signin", cheap=True)

    async def attack() -> tuple[list[httpx.Response], httpx.Response, httpx.Response]:
        limits = httpx.Limits(max_connections=74)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60, limits=limits) as http:
            csrf = await _form(http)
            guesses = await asyncio.gather(
                *(_sign_in(http, csrf, "target@staff.example", f"guess-{i:02d}-wrong") for i in range(74))
            )
            right = await _sign_in(http, csrf, "target@staff.example", PASSWORD)
            unknown = await _sign_in(http, csrf, "nobody@staff.example", "guess-wrong")
            return guesses, right, unknown

    try:
        guesses, right, unknown = asyncio.run(attack())
    finally:
        server.stop()
    assert all(_refused(answer) for answer in guesses), {a.status_code for a in guesses}
    assert _refused(right), "the right password opened a locked account"
    assert _refused(unknown)  # one message for all: locked, wrong, unknown
    assert right.text.count(GENERIC) == unknown.text.count(GENERIC) == 1
    account_id = sql(database_url, query="SELECT id FROM staff_accounts WHERE email = 'target@staff.example'")[0][0]
    failures, locked_until = _throttle(database_url, f"account:{account_id}")
    assert failures == 75 and locked_until is not None and locked_until > time.time()  # every attempt counted


def test_failures_from_one_network_lock_it_out_for_every_account(
    database_url: str, env: dict[str, str], tmp_path: Path
) -> None:
    """Three wrong passwords on each of four accounts (each below its own limit of five) from 127.0.2.x, with a
    network limit of ten: the network is locked, so a fifth account's right password is refused from there, and
    accepted from another network."""
    emails = [f"agent{i}@staff.example" for i in range(5)]
    _accounts(database_url, emails)
    server = _start({**env, "SIGNIN_NETWORK_MAX_FAILURES": "10"}, tmp_path, "network", cheap=True)

    async def from_network(address: str, attempts: list[tuple[str, str]]) -> list[httpx.Response]:
        transport = httpx.AsyncHTTPTransport(local_address=address)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60, transport=transport) as http:
            csrf = await _form(http)
            return list(await asyncio.gather(*(_sign_in(http, csrf, e, p) for e, p in attempts)))

    try:
        wrong = asyncio.run(from_network("127.0.2.7", [(e, "not-the-password") for e in emails[:4] for _ in range(3)]))
        [locked_out] = asyncio.run(from_network("127.0.2.8", [(emails[4], PASSWORD)]))
        [elsewhere] = asyncio.run(from_network("127.0.3.9", [(emails[4], PASSWORD)]))
    finally:
        server.stop()
    assert all(_refused(answer) for answer in wrong)
    assert _refused(locked_out), "a right password from a locked-out network was accepted"
    assert elsewhere.status_code == 303 and "desk_session" in elsewhere.cookies, elsewhere.text[:300]
    failures, locked_until = _throttle(database_url, "network:127.0.2.0/24")
    assert failures >= 11 and locked_until is not None


@pytest.mark.parametrize("backend", ["sqlite"])  # the event loop is the subject here, not the database
def test_consent_checks_keep_answering_during_a_flood_of_sign_ins(
    database_url: str, env: dict[str, str], tmp_path: Path
) -> None:
    """24 sign-ins at once at argon2's real cost (about a second of CPU each on this machine): a single check keeps
    answering in milliseconds. On the event loop, each hash would hold every check behind it for that second."""
    created = cli(env, tmp_path, "staff", "create", "--email", "flood@staff.example", "--name", "F", "--role", "agent")
    assert created.returncode == 0, created.stderr
    client = cli(env, tmp_path, "clients", "create", "--name", "checks", "--scopes", "consent:check")
    credentials = json.loads(client.stdout)
    server = _start({**env, "SIGNIN_MAX_FAILURES": "1000"}, tmp_path, "flood", cheap=False)
    latencies: list[float] = []
    flooding = threading.Event()
    done = threading.Event()

    def checks(token: str) -> None:
        params = {"subject": "cust-flood", "purpose": "offers", "channel": "email"}
        with httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
            while not done.is_set():
                started = time.perf_counter()
                answer = http.get("/v1/consents/check", params=params)
                if flooding.is_set():
                    latencies.append(time.perf_counter() - started)
                assert answer.status_code == 200, answer.text
                time.sleep(0.01)

    async def flood() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=120) as http:
            csrf = await _form(http)
            flooding.set()
            return list(
                await asyncio.gather(*(_sign_in(http, csrf, "flood@staff.example", f"w-{i}") for i in range(24)))
            )

    try:
        token = access_token(server.base_url, credentials["client_id"], credentials["client_secret"])
        checker = threading.Thread(target=checks, args=(token,), daemon=True)
        checker.start()
        started = time.monotonic()
        answers = asyncio.run(flood())
        took = time.monotonic() - started
        done.set()
        checker.join(timeout=30)
    finally:
        done.set()
        server.stop()
    assert all(_refused(answer) for answer in answers)
    assert took > 2.0, f"the flood took {took:.1f} s: too little to show a stall"
    assert len(latencies) >= 20, latencies
    worst, typical = max(latencies), statistics.median(latencies)
    print(f"flood {took:.1f} s, {len(latencies)} checks, median {typical * 1000:.1f} ms, max {worst * 1000:.1f} ms")
    assert typical < 0.05 and worst < 0.5, (typical, worst)
