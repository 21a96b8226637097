"""The one-month clock of a data-subject request (GDPR 12(3)), computed as Regulation 1182/71 art. 3(2)(c) says:
the same date one month later, or the last day of that month when it has no such date. Extensions: once, by one
or two months from the original due date, with reasons, within the first month."""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.dsr.deadlines import (
    DeadlineError,
    add_months,
    check_extension,
    due_date,
    extended_due_date,
    received_on,
    urgency,
)

PARIS = ZoneInfo("Europe/Paris")


@pytest.mark.parametrize(
    ("received", "due"),
    [
        (date(2024, 1, 31), date(2024, 2, 29)),  # leap year: 29 February exists
        (date(2023, 1, 31), date(2023, 2, 28)),  # common year: the last day of February
        (date(2024, 1, 30), date(2024, 2, 29)),
        (date(2024, 1, 29), date(2024, 2, 29)),
        (date(2024, 1, 28), date(2024, 2, 28)),
        (date(2024, 2, 29), date(2024, 3, 29)),  # from a leap day
        (date(2024, 3, 31), date(2024, 4, 30)),  # 30-day month
        (date(2024, 5, 31), date(2024, 6, 30)),
        (date(2024, 8, 31), date(2024, 9, 30)),
        (date(2024, 10, 31), date(2024, 11, 30)),
        (date(2025, 12, 31), date(2026, 1, 31)),  # across the year end
        (date(2025, 12, 15), date(2026, 1, 15)),
        (date(2024, 11, 30), date(2024, 12, 30)),
        (date(2000, 1, 31), date(2000, 2, 29)),  # divisible by 400: leap
        (date(2100, 1, 31), date(2100, 2, 28)),  # divisible by 100, not 400: not leap
        (date(2024, 7, 1), date(2024, 8, 1)),
    ],
)
def test_due_one_calendar_month_after_receipt(received: date, due: date) -> None:
    assert due_date(received) == due


def test_the_day_of_receipt_is_counted_where_the_controller_is() -> None:
    """23:30 UTC on 31 January is 1 February in Paris: due 1 March, not 29 February."""
    moment = datetime(2024, 1, 31, 23, 30, tzinfo=UTC)
    assert received_on(moment, PARIS) == date(2024, 2, 1)
    assert due_date(received_on(moment, PARIS)) == date(2024, 3, 1)
    assert due_date(received_on(moment, ZoneInfo("UTC"))) == date(2024, 2, 29)


@pytest.mark.parametrize(
    ("original", "months", "extended"),
    [
        (date(2024, 2, 29), 2, date(2024, 4, 29)),
        (date(2024, 2, 29), 1, date(2024, 3, 29)),
        (date(2023, 12, 31), 2, date(2024, 2, 29)),  # lands on a leap day
        (date(2024, 12, 31), 2, date(2025, 2, 28)),
        (date(2024, 3, 31), 2, date(2024, 5, 31)),
        (date(2024, 3, 31), 1, date(2024, 4, 30)),
        (date(2024, 11, 30), 2, date(2025, 1, 30)),
    ],
)
def test_extension_counts_from_the_original_due_date(original: date, months: int, extended: date) -> None:
    assert extended_due_date(original, months) == extended


def extension(
    *,
    today: date = date(2024, 2, 10),
    original_due: date = date(2024, 2, 29),
    already_extended: bool = False,
    reason: str = "many systems to search",
    months: int = 2,
) -> date:
    return check_extension(
        today=today, original_due=original_due, already_extended=already_extended, reason=reason, months=months
    )


def test_extension_rules() -> None:
    assert extension() == date(2024, 4, 29)
    with pytest.raises(DeadlineError, match="already extended"):
        extension(already_extended=True, months=1)
    with pytest.raises(DeadlineError, match="reasons"):
        extension(reason="   ", months=1)
    with pytest.raises(DeadlineError, match="1 or 2 months"):
        extension(months=3)
    with pytest.raises(DeadlineError, match="1 or 2 months"):
        extension(months=0)
    with pytest.raises(DeadlineError, match="within the first month"):
        extension(today=date(2024, 3, 1))
    # the last day of the first month is still in time
    assert extension(today=date(2024, 2, 29), months=1) == date(2024, 3, 29)


def test_overdue_and_reminder_flags() -> None:
    due = date(2024, 3, 1)
    assert urgency(due, date(2024, 3, 2), "open", 7).overdue
    assert urgency(due, date(2024, 3, 2), "in_progress", 7).days_left == -1
    assert not urgency(due, date(2024, 3, 1), "open", 7).overdue, "the due date itself is not overdue"
    assert urgency(due, date(2024, 3, 1), "open", 7).reminder
    assert urgency(due, date(2024, 2, 23), "waiting_customer", 7).reminder
    assert not urgency(due, date(2024, 2, 22), "open", 7).reminder
    for closed in ("done", "refused"):
        flags = urgency(due, date(2024, 4, 1), closed, 7)
        assert not flags.overdue and not flags.reminder


@given(st.dates(min_value=date(1900, 1, 1), max_value=date(2399, 11, 30)), st.integers(min_value=1, max_value=24))
def test_add_months_is_the_same_date_or_the_last_day_of_the_month(day: date, months: int) -> None:
    result = add_months(day, months)
    assert (result.year * 12 + result.month) - (day.year * 12 + day.month) == months
    last = calendar.monthrange(result.year, result.month)[1]
    assert result.day == min(day.day, last)


@given(st.dates(min_value=date(1900, 1, 1), max_value=date(2399, 11, 30)))
def test_one_month_is_28_to_31_days_and_never_earlier_than_a_shorter_month_allows(day: date) -> None:
    due = due_date(day)
    assert timedelta(days=28) <= due - day <= timedelta(days=31)
    assert due_date(day + timedelta(days=1)) >= due, "a later receipt is never due earlier"
