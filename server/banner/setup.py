"""Attaches the banner's shared objects to the app services: `services.banner` is a `BannerService`."""

from __future__ import annotations

from typing import Any

from server.banner.service import BannerService


def attach(services: Any) -> None:
    """Read `policy_docs/sites.yaml` and the banner texts, build `banner.js`; errors name the file at fault."""
    settings = services.settings
    services.banner = BannerService.load(
        settings.policy_dir,
        settings.cookie_rate_per_minute,
        services.catalog,
        settings.issuer,
        services.clock,
    )
