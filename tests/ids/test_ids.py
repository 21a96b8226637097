"""Event ids are RFC 9562 version 7 UUIDs: time-ordered, strictly increasing within a process, still random."""

from __future__ import annotations

import itertools
import time
import uuid

import pytest

from server import ids


def test_layout_follows_rfc_9562() -> None:
    before = time.time_ns() // 1_000_000
    value = ids.uuid7()
    after = time.time_ns() // 1_000_000
    assert value.version == 7
    assert value.variant == uuid.RFC_4122
    assert before <= value.int >> 80 <= after  # unix_ts_ms, the first 48 bits


def test_uuid7_at_places_each_field() -> None:
    random_bits = (0xABC << 62) | 0x2345_6789_ABCD_EF01
    value = ids.uuid7_at(0x0123_4567_89AB, random_bits)
    assert str(value) == "01234567-89ab-7abc-a345-6789abcdef01"
    assert value.version == 7 and value.variant == uuid.RFC_4122


def test_ids_increase_even_when_the_clock_stands_still_or_goes_back(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([5_000_000_000_000_000] * 500 + [4_000_000_000_000_000] * 500)
    monkeypatch.setattr(ids.time, "time_ns", lambda: next(clock))
    monkeypatch.setattr(ids, "_last", 0)  # restored afterwards: later ids are not stamped with this fake clock
    made = [ids.uuid7() for _ in range(1000)]
    assert made == sorted(made)
    assert len(set(made)) == len(made)
    assert {value.version for value in made} == {7}
    assert {value.variant for value in made} == {uuid.RFC_4122}
    # A step is random: an id made in the same millisecond as a known one is not that one plus one.
    steps = {later.int - earlier.int for earlier, later in itertools.pairwise(made)}
    assert len(steps) > 900
