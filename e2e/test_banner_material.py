"""A new material cookie-policy version makes the banner ask again (its own consent server: it publishes a version)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from e2e.banner_host import BannerSite, banner_site, stored_choice
from e2e.conftest import screenshot

DIALOG = "#ckb [role=dialog]"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BannerSite]:
    with banner_site(tmp_path_factory.mktemp("banner-material")) as running:
        yield running


def _publish_material_v2(site: BannerSite) -> None:
    effective = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for lang in ("fr", "en"):
        source = (site.policy_dir / "cookie-policy" / "1" / f"{lang}.md").read_text(encoding="utf-8")
        text = (
            source.replace('version: "1"', 'version: "2"')
            .replace("material: false", "material: true")
            .replace(
                'effective_at: "2026-01-01T00:00:00Z"',
                f'effective_at: "{effective}"',
            )
        )
        text += "\nVersion 2: a new advertising partner.\n"
        target = site.policy_dir / "cookie-policy" / "2" / f"{lang}.md"
        target.parent.mkdir(exist_ok=True)
        target.write_text(text, encoding="utf-8")
    site.api.cli("policies", "sync")


def test_a_new_material_cookie_policy_version_asks_again(browser: Any, site: BannerSite) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(site.page())
    page.wait_for_selector(DIALOG)
    page.get_by_role("button", name="Tout accepter").click()
    page.wait_for_function("window.ran.analytics === true")
    page.wait_for_function("!document.cookie.includes('%22p%22')")
    before = stored_choice(page)
    assert before is not None and before["v"] == "1"
    kept = context.cookies()
    context.close()

    _publish_material_v2(site)
    deadline = datetime.now(UTC) + timedelta(seconds=20)
    while site.config()["stale"] != ["1"]:  # the catalogue is reloaded every few seconds
        assert datetime.now(UTC) < deadline, site.config()["stale"]
        time.sleep(0.25)
    assert site.config()["policy"]["fr"]["version"] == "2"

    # The same visitor comes back (same first-party cookie; a fresh HTTP cache, as after the config's max-age).
    context = browser.new_context()
    context.add_cookies(kept)
    page = context.new_page()
    try:
        page.goto(site.page())
        page.wait_for_selector(DIALOG)
        assert "(version 2)" in page.locator(DIALOG).inner_text()
        screenshot(page, "banner-reprompt-v2")
        page.wait_for_timeout(200)
        assert page.evaluate("window.ran") == {}, "consent given under version 1 no longer runs anything"
        page.get_by_role("button", name="Tout accepter").click()
        page.wait_for_function("window.ran.analytics === true")
        page.wait_for_function("!document.cookie.includes('%22p%22')")
        after = stored_choice(page)
        assert after is not None and after["v"] == "2" and after["id"] == before["id"]
        events = site.events(after["id"])
        assert [e["policy"]["version"] for e in events] == ["1"] * 3 + ["2"] * 3
        assert {e["ui_snapshot"] for e in events[3:]} == {site.config()["hash"]["fr"]}
        assert events[0]["ui_snapshot"] != events[3]["ui_snapshot"], "the text shown named another version"
    finally:
        context.close()
