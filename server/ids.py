"""Time-ordered identifiers: UUID version 7 (RFC 9562, section 5.7) for ledger events.

An event id is a key of two unique indexes that grow with every event: `consent_events`' primary key and
`log_entries.event_id`, which the sequencer fills a batch at a time. Random (version 4) ids land all over those
B-trees, so each batch of the sequencer would rewrite pages across the whole index: on SQLite two thirds of the
cost of writing a million log entries (bench/README.md, "Where a first checkpoint's time goes"). A version 7 id
starts with the Unix time in milliseconds at which it was made, so new ids are appended at the right edge of the
index, in about the order the sequencer meets them.

The other 74 bits are random, so ids stay unguessable. The time they reveal, to the millisecond, is when the event
was recorded, which anyone who can read the event reads in its `recorded_at` anyway. Within a process the ids are
strictly increasing (RFC 9562 section 6.2, method 2): when the clock has not moved on, the previous value is
incremented by a random step of up to 2^32, so an id does not give away the next one.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

_RANDOM_BITS = 74  # 12 bits of rand_a and 62 of rand_b
_RAND_B_BITS = 62
_VERSION = 7 << 76
_VARIANT = 0b10 << 62

_lock = threading.Lock()
_last = 0


def uuid7_at(unix_ms: int, random_bits: int) -> uuid.UUID:
    """The version 7 UUID for a millisecond timestamp (48 bits) and 74 random bits."""
    rand_a = (random_bits >> _RAND_B_BITS) & 0xFFF
    rand_b = random_bits & ((1 << _RAND_B_BITS) - 1)
    return uuid.UUID(int=(unix_ms & ((1 << 48) - 1)) << 80 | _VERSION | rand_a << 64 | _VARIANT | rand_b)


def uuid7() -> uuid.UUID:
    """A new version 7 UUID, greater than every one this process made before."""
    global _last
    candidate = (time.time_ns() // 1_000_000) << _RANDOM_BITS | int.from_bytes(os.urandom(10)) >> 6
    with _lock:
        value = candidate if candidate > _last else _last + 1 + int.from_bytes(os.urandom(4))
        _last = value
    return uuid7_at(value >> _RANDOM_BITS, value & ((1 << _RANDOM_BITS) - 1))
