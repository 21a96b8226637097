"""The one wall clock of the service (tests pass their own callable instead)."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)
