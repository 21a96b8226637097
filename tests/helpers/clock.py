"""Clocks the tests hand to `create_app` (the `clock` fixture is a `Clock`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


@dataclass
class Clock:
    """A clock tests can stop and move; it follows real time until `set` is called."""

    fixed: datetime | None = None

    def __call__(self) -> datetime:
        return self.fixed or datetime.now(UTC)

    def set(self, value: datetime) -> None:
        self.fixed = value

    def advance(self, **delta: float) -> None:
        self.fixed = self() + timedelta(**delta)


@dataclass
class StepClock(Clock):
    """`Clock`, and when `step` is set every reading moves it on by `step` (a slow transaction)."""

    step: timedelta | None = None

    def __call__(self) -> datetime:
        now = super().__call__()
        if self.step is not None:
            self.fixed = now + self.step
        return now
