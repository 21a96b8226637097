"""The browser harness itself: Debian's chromium drives a page served by the real server."""

from __future__ import annotations

from typing import Any

from e2e.conftest import LiveServer


def test_browser_reaches_the_live_server(page: Any, live_server: LiveServer) -> None:
    page.goto(f"{live_server.url}/v1/policies")
    assert "privacy-policy" in page.content()
