"""The limiter: rules, the sliding-window estimate and the Retry-After it implies (`server.limits` says why)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from server.limits.stores import SWEEP_EVERY_S, Count, Store

log = logging.getLogger("server.limits")
LOG_EVERY_S = 10.0


@dataclass(frozen=True)
class Rule:
    """At most `limit` requests per `window_s` seconds per key."""

    name: str
    limit: int
    window_s: int
    fail_open: bool = True  # what an unavailable store answers (see `server.limits`)


@dataclass(frozen=True)
class Hit:
    rule: Rule
    key: str


class Limiter:
    def __init__(self, store: Store, secret: str, now: Callable[[], float] = time.time) -> None:
        self.store = store
        self.now = now
        self._secret = hashlib.sha256(b"rate-limit-keys\0" + secret.encode()).digest()
        self._logged = -LOG_EVERY_S
        self._failures = 0

    def _key(self, hit: Hit) -> str:
        return self._key_of(hit.rule, hit.key)

    def _key_of(self, rule: Rule, key: str) -> str:
        """What the store holds for `key`: the rule, its window and a keyed digest."""
        digest = hashlib.blake2b(key.encode(), key=self._secret, digest_size=16).hexdigest()
        return f"{rule.name}:{rule.window_s}:{digest}"

    async def hit(self, *hits: tuple[Rule, str]) -> int | None:
        """Count one request against each (rule, key); None if every one is within its budget, else the seconds to
        wait before the request could be accepted (the longest of the refused ones)."""
        now = self.now()
        wanted = [Hit(rule, key) for rule, key in hits]
        counts: list[Count] = []
        try:
            counts = await self.store.incr(
                [(self._key(h), h.rule.window_s, int(now // h.rule.window_s)) for h in wanted], now
            )
        except Exception as exc:
            # The store is down or too slow: logged (once every LOG_EVERY_S, with the count since), and answered by
            # each rule's fail_open.
            self._failures += 1
            if time.monotonic() - self._logged >= LOG_EVERY_S:
                self._logged = time.monotonic()
                log.warning(
                    "rate limit store unavailable (%s: %s); %d request(s) not counted since the last warning",
                    type(exc).__name__,
                    exc,
                    self._failures,
                )
                self._failures = 0
            shut = [h.rule for h in wanted if not h.rule.fail_open]
            return max((r.window_s for r in shut), default=None)
        waits = [_wait(h.rule, c, now) for h, c in zip(wanted, counts, strict=True)]
        refused = [w for w in waits if w is not None]
        return max(refused) if refused else None

    async def allow(self, rule: Rule, key: str) -> bool:
        return await self.hit((rule, key)) is None

    async def sweep(self) -> None:
        await self.store.sweep(self.now())

    async def run_sweeps(self, every_s: float = SWEEP_EVERY_S) -> None:
        """Sweep the counters every `every_s` until cancelled (each server process runs one: a sweep is a DELETE of
        what has expired, harmless twice); a store that fails is tried again at the next round."""
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.sweep()
            except Exception:  # a busy or lost database: the next sweep deletes them
                log.debug("rate limit sweep failed", exc_info=True)

    async def aclose(self) -> None:
        await self.store.aclose()


def estimate(rule: Rule, count: Count, now: float) -> float:
    elapsed = (now % rule.window_s) / rule.window_s
    return count.previous * (1 - elapsed) + count.current


def _wait(rule: Rule, count: Count, now: float) -> int | None:
    """None if this request is within the budget; else the whole seconds until one more would be (no other hits
    counted meanwhile)."""
    if estimate(rule, count, now) <= rule.limit:
        return None
    w = rule.window_s
    start = now - now % w
    # Within the current window the previous window's weight falls: previous * (1 - f) + current + 1 <= limit.
    room = rule.limit - count.current - 1
    if room >= 0 and count.previous > 0:
        f = 1 - room / count.previous
        return max(1, math.ceil(start + f * w - now))
    # In the next window the current count is the weighted one: current * (1 - f) + 1 <= limit.
    f = max(0.0, 1 - (rule.limit - 1) / count.current)
    return max(1, math.ceil(start + w + f * w - now))
