"""How fast this machine runs Python today, printed beside every benchmark's figures.

The machines these benchmarks run on vary a lot from day to day with the same code (seen here: up to 3x between
two days). Absolute figures mean little without it; same-run ratios and same-day before/after figures stay the ones
to compare.
"""

from __future__ import annotations

import time

LOOP = 10_000_000


def python_loop_seconds(repeat: int = 3) -> float:
    """Best of `repeat` runs of a pure-Python loop of LOOP integer additions (one core, no allocation to speak of)."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        total = 0
        for i in range(LOOP):
            total += i
        best = min(best, time.perf_counter() - started)
    return best


def describe(seconds: float) -> str:
    return f"machine speed: {LOOP:,} Python additions in {seconds:.2f} s (best of 3; lower is faster)"
