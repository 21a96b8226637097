"""Slow clients are cut and the others served (issue 24, item 8): a real `python -m server serve` on loopback and
raw sockets that send a request's header or body a byte at a time, or nothing, or hold connections open."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers.processes import Server, access_token, new_client, server_env, start_server, wait_ready
from tests.ports import free_port

pytestmark = pytest.mark.slow

LIMIT_S = 1.0
MAX_CONNECTIONS = 6


@pytest.fixture
def server(sqlite_template: object, tmp_path: Path) -> Iterator[tuple[Server, str]]:
    url, _ = sqlite_template.new()  # type: ignore[attr-defined]
    port = free_port()
    env = {
        **server_env(url, tmp_path, port),
        "HTTP_HEADER_TIMEOUT_SECONDS": str(LIMIT_S),
        "HTTP_BODY_TIMEOUT_SECONDS": str(LIMIT_S),
        "HTTP_KEEP_ALIVE_SECONDS": "1",
        "HTTP_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
    }
    credentials = new_client(env, tmp_path, "consent:write consent:read")
    started = start_server(env, tmp_path, "server")
    try:
        wait_ready(started.base_url, started.process, started.output)
        yield started, access_token(started.base_url, credentials["client_id"], credentials["client_secret"])
    finally:
        started.stop()


def connect(base_url: str) -> socket.socket:
    host, port = base_url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    return answer


def dribble(sock: socket.socket, data: bytes, every_s: float, stop: threading.Event) -> None:
    """Send `data` a byte every `every_s` until it is all sent, the server closes, or `stop`."""
    for byte in data:
        if stop.is_set():
            return
        try:
            sock.send(bytes([byte]))
        except OSError:  # the server closed the connection
            return
        time.sleep(every_s)


def quick_answers(base_url: str, seconds: float) -> list[float]:
    """How long each of a stream of ordinary requests took, for `seconds`."""
    times = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.monotonic()
        assert httpx.get(f"{base_url}/healthz", timeout=5).status_code == 200
        times.append(time.monotonic() - started)
        time.sleep(0.05)
    return times


def test_a_header_sent_byte_by_byte_is_cut_and_other_clients_are_served(server: tuple[Server, str]) -> None:
    running, _ = server
    sock = connect(running.base_url)
    stop = threading.Event()
    header = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Slow: " + b"a" * 200 + b"\r\n\r\n"
    opened = time.monotonic()
    sender = threading.Thread(target=dribble, args=(sock, header, 0.05, stop))
    sender.start()
    try:
        others = quick_answers(running.base_url, LIMIT_S / 2)
        answer = read_until_closed(sock)
        cut_after = time.monotonic() - opened
    finally:
        stop.set()
        sender.join()
        sock.close()
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"/problems/request-timeout" in answer
    assert LIMIT_S * 0.9 <= cut_after <= LIMIT_S + 1.5, cut_after  # the header would have taken 12 s
    assert others and max(others) < 1.0, others


def test_a_connection_that_sends_nothing_is_closed(server: tuple[Server, str]) -> None:
    running, _ = server
    sock = connect(running.base_url)
    opened = time.monotonic()
    try:
        answer = read_until_closed(sock)
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert LIMIT_S * 0.9 <= time.monotonic() - opened <= LIMIT_S + 1.5


def test_a_body_sent_byte_by_byte_gets_a_408_problem_and_writes_nothing(server: tuple[Server, str]) -> None:
    running, token = server
    body = json.dumps(
        {
            "policy": {"document": "privacy-policy", "version": "2", "lang": "en"},
            "decisions": [{"purpose": "offers", "channel": "email", "action": "grant"}],
        }
    ).encode()
    head = (
        f"POST /v1/subjects/cust-slow/consents HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    sock = connect(running.base_url)
    stop = threading.Event()
    sock.sendall(head)
    opened = time.monotonic()
    sender = threading.Thread(target=dribble, args=(sock, body, 0.05, stop))
    sender.start()
    try:
        others = quick_answers(running.base_url, LIMIT_S / 2)
        answer = read_until_closed(sock)
        cut_after = time.monotonic() - opened
    finally:
        stop.set()
        sender.join()
        sock.close()
    status, _, rest = answer.partition(b"\r\n")
    assert status.startswith(b"HTTP/1.1 408 "), answer
    headers, _, content = rest.partition(b"\r\n\r\n")
    assert b"connection: close" in headers.lower()
    assert json.loads(content)["type"] == "/problems/request-timeout"
    assert LIMIT_S * 0.9 <= cut_after <= LIMIT_S + 1.5, cut_after  # the body would have taken 6 s
    assert others and max(others) < 1.0, others
    events = httpx.get(
        f"{running.base_url}/v1/subjects/cust-slow/events", headers={"Authorization": f"Bearer {token}"}, timeout=5
    )
    assert events.status_code == 404, events.text  # nothing recorded, not even the subject


def test_idle_keep_alive_connections_close_and_past_the_limit_new_requests_get_503(
    server: tuple[Server, str],
) -> None:
    running, _ = server
    sock = connect(running.base_url)
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = b""
        while b'"ok"}' not in answer:
            answer += sock.recv(65536)
        answered = time.monotonic()
        assert answer.startswith(b"HTTP/1.1 200 ") and b"connection: close" not in answer.lower()
        assert read_until_closed(sock) == b""
        assert 0.8 <= time.monotonic() - answered <= 2.5  # HTTP_KEEP_ALIVE_SECONDS=1
    finally:
        sock.close()
    held = [connect(running.base_url) for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.2)
        refused = httpx.get(f"{running.base_url}/healthz", timeout=5)
        assert refused.status_code == 503, refused.text
        # The held connections send nothing: the header time limit cuts them, and the server takes requests again.
        for sock in held:
            assert read_until_closed(sock).startswith(b"HTTP/1.1 408 ")
    finally:
        for sock in held:
            sock.close()
    assert httpx.get(f"{running.base_url}/healthz", timeout=5).status_code == 200
