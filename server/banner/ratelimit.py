"""A per-network, per-minute request budget for the public banner endpoint.

Fixed one-minute windows, counted per truncated IP (/24, /48: what the ledger keeps, invariant 9, docs/design.md).
Memory is bounded by the networks seen in the current minute: the table is emptied when the minute changes. The count
lives in the process: with N app processes behind a load balancer a network gets at most N times the budget, which is
enough to stop a flood from one machine; a shared budget would need a table or a cache server.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class RateLimiter:
    def __init__(self, per_minute: int, now: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.now = now
        self._window = -1
        self._counts: dict[str, int] = {}

    def hit(self, key: str) -> int | None:
        """Count one request for `key`; None if it is within the budget, else the seconds until the next window."""
        now = self.now()
        window = int(now // 60)
        if window != self._window:
            self._window = window
            self._counts.clear()
        count = self._counts.get(key, 0) + 1
        self._counts[key] = count
        if count <= self.per_minute:
            return None
        return max(1, math.ceil((window + 1) * 60 - now))
