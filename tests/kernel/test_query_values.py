"""`query_values` reads a query string exactly as Starlette's `request.query_params` does (it replaces it on the
single-check path, for speed)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from starlette.datastructures import QueryParams

from server.kernel.params import query_values

# Bytes that matter to the parsing (separators, escapes, plus) and some that do not, UTF-8 and stray high bytes.
PIECES = [b"&", b"=", b"+", b"%", b"%2", b"%20", b"%2B", b"%26", b"%3D", b"%C3%A9", b"%ff", b"\xc3\xa9", b"\xff"]
PIECES += [b"a", b"subject", b"purpose", b"channel", b"at", b"2026-01-01T00:00:00Z", b" ", b";"]


@given(st.lists(st.sampled_from(PIECES), max_size=30))
def test_query_values_reads_what_starlette_reads(pieces: list[bytes]) -> None:
    raw = b"".join(pieces)
    assert query_values(raw) == dict(QueryParams(raw.decode("latin-1")))


def test_the_last_repeated_parameter_wins_and_blank_values_stay() -> None:
    raw = b"subject=a&purpose=&subject=b+c%21&channel&=x"
    assert query_values(raw) == {"subject": "b c!", "purpose": "", "channel": "", "": "x"}
    assert query_values(raw) == dict(QueryParams(raw.decode("latin-1")))
