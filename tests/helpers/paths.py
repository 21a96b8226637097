"""Where the repository's files are: found once from here, not from each test module's own path, which changes when
a test module moves to another folder."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TEST_DATA = REPO / "tests" / "data"
