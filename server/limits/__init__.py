"""Request budgets shared by every app process: one limiter concept for the banner, the opt-in mails and the
preference center's "send me a link".

Algorithm: a sliding window counter (two fixed windows, the previous one weighted by how much of it still falls
inside the sliding window: `estimate = previous * (1 - elapsed / window) + current`). It was chosen because it
costs one atomic statement per request on every store (an upsert that returns the current window's count and reads
the previous window's in the same statement, or one Redis MULTI), keeps two small counters per key whatever the
traffic, and has none of a plain fixed window's bursts of twice the budget across a window boundary (a sliding
log would be exact but keeps one row per hit; GCRA needs a read-modify-write of a timestamp and gives nothing the
banner needs more). Every attempt counts, refused ones included, so a flood stays refused while it lasts.

Keys are `rule name` + a keyed BLAKE2b digest of what is counted (a consent id, a truncated IP, a ref): the store
never holds a ref or an address (invariant 9, docs/design.md), and every key has the same small size.

A store that fails (database down, Redis unreachable, a timeout) is logged and answered by the rule's `fail_open`:
the banner's rules let the request through, because a lost limit is better than a lost proof of consent; the mail
rules refuse, because a mail that was not sent can be asked for again and a flood cannot be unsent.
"""

from server.limits.limiter import Limiter, Rule
from server.limits.stores import RedisStore, SqlStore, Store, open_store

__all__ = ["Limiter", "RedisStore", "Rule", "SqlStore", "Store", "open_store"]
