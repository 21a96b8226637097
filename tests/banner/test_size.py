"""CI fails when what a site loads for the banner (JS with its CSS, gzip -9) exceeds 8 KB (target: 6 KB)."""

from __future__ import annotations

import pytest

from bench import banner_size


def test_banner_weight_is_within_the_ci_budget(capsys: pytest.CaptureFixture[str]) -> None:
    assert banner_size.main([]) == 0
    printed = capsys.readouterr().out
    assert "Osano" in printed and "this banner" in printed
    sizes = banner_size.measure()
    assert sizes.total_gzip <= banner_size.CI_BUDGET


def test_the_budget_check_fails_above_8_kb(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(banner_size, "CI_BUDGET", 100)
    assert banner_size.main([]) == 1
