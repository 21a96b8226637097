"""A sliding-window limit per key, in this process's memory."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable


class RateLimiter:
    """At most `limit` events per `window_s` seconds per key, in this process's memory.

    A soft limit against mail bombing (confirmation mails, "send me a link"); with several app processes each keeps
    its own count, which only makes the limit proportionally looser.
    """

    def __init__(self, limit: int, window_s: float, now: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self.now = now
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()

    def allow(self, key: str) -> bool:
        now = self.now()
        hits = self._hits.setdefault(key, deque())
        self._hits.move_to_end(key)
        while hits and hits[0] <= now - self.window_s:
            hits.popleft()
        while len(self._hits) > 10_000:
            self._hits.popitem(last=False)
        if len(hits) >= self.limit:
            return False
        hits.append(now)
        return True
