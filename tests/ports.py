"""Ports for the servers the tests start (the app, SMTP sinks, static hosts).

Each test process takes ports from a range of its own, below the kernel's ephemeral ports (32768-60999 here): two
processes of a parallel run (pytest-xdist's gw0, gw1...) never pick the same port, and no client socket can hold
one of them. Asking the kernel for a free port (bind to port 0, close, hand the number on) could give two
processes the same one, and a server that then failed to bind would be replaced, unseen, by the other's.
"""

from __future__ import annotations

import itertools
import os
import socket

BASE = 20_000
SPAN = 1_000  # ports per test process
_taken = itertools.count((os.getpid() * 37) % SPAN)  # another run at the same time most likely starts elsewhere


def process_index() -> int:
    """0 for a plain run and for pytest-xdist's gw0, n for gwn."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "")
    return int(name[2:]) if name.startswith("gw") and name[2:].isdigit() else 0


def free_port() -> int:
    """A loopback port of this process's range that nothing is bound to now."""
    start = BASE + (process_index() % 12) * SPAN  # 12 ranges stay below 32768, where ephemeral ports start
    for _ in range(SPAN):
        port = start + next(_taken) % SPAN
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:  # in use, or still in TIME_WAIT
                continue
            return port
    raise RuntimeError(f"no free port in {start}-{start + SPAN - 1}")
