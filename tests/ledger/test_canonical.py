"""The chain's canonical bytes (invariant 4, docs/design.md): the fast path gives exactly the RFC 8785 bytes."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from server.ledger.chain import body_hash, canonical

# Every code point, lone surrogates included (the fast path must hand those to rfc8785, never write them).
TEXT = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=40)
# Mostly ASCII keys (what bodies have, and what the fast path takes), sometimes any.
KEYS = st.text(alphabet=st.characters(max_codepoint=0x7F), min_size=1, max_size=8) | st.text(
    alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF), min_size=1, max_size=8
)
SCALARS = st.none() | st.booleans() | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1) | TEXT
VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4), max_leaves=20
)


def _reference(body: Any) -> bytes | None:
    try:
        return rfc8785.dumps(body)
    except Exception:  # rfc8785 refuses what cannot be canonicalised (a lone surrogate): so must we
        return None


@settings(max_examples=600, deadline=None)
@given(st.dictionaries(KEYS, VALUES, max_size=6))
def test_canonical_bytes_equal_rfc8785_for_any_body(body: dict[str, Any]) -> None:
    expected = _reference(body)
    if expected is None:
        try:
            canonical(body)
        except Exception:
            return
        raise AssertionError("canonical() wrote a body rfc8785 refuses")
    assert canonical(body) == expected


def test_an_event_body_with_every_kind_of_character_hashes_as_rfc8785_does() -> None:
    awkward = "".join(chr(c) for c in range(0x00, 0x80)) + "\u00e9\u2028\u2029\ufeff\U0001f600\ud7ff\ue000"
    body: dict[str, Any] = {
        "id": "01900000-0000-7000-8000-000000000002",
        "seq": 2**53 - 1,
        "evidence": {"user_agent": awkward, "gpc": False, "ip": None},
        "actor": {"type": "client", "id": awkward[::-1]},
        "prev_hash": "0" * 64,
    }
    assert canonical(body) == rfc8785.dumps(body)
    assert body_hash(body) == hashlib.sha256(rfc8785.dumps(body)).hexdigest()


def test_what_the_fast_path_does_not_cover_goes_through_rfc8785() -> None:
    for body in ({"n": 1.5}, {"n": 1e21}, {"é": 1}, {"\U0001f600": 1, "\ue000": 2}):
        assert canonical(body) == rfc8785.dumps(body)
    with pytest.raises(rfc8785.IntegerDomainError):
        canonical({"n": 2**60})  # beyond a double's integers: refused, as rfc8785 refuses it
