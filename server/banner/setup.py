"""Attaches the banner's shared objects to the app services: `services.banner` is a `BannerService`."""

from __future__ import annotations

from typing import Any

from server.banner.service import BannerService
from server.banner.sites import DEMO_SITE, with_origin


def attach(services: Any) -> None:
    """Read `policy_docs/sites.yaml` and the banner texts, build `banner.js`; errors name the file at fault.

    Outside production, the `demo` site also allows the server's own origin (PUBLIC_URL): its demo page at
    /demo/banner is served from there, on whatever port the server runs (sites.yaml can only list the default's)."""
    settings = services.settings
    banner = BannerService.load(
        settings.policy_dir,
        settings.cookie_rate_per_minute,
        services.catalog,
        settings.issuer,
        services.clock,
    )
    if settings.environment != "production":
        banner.tree = with_origin(banner.tree, DEMO_SITE, settings.issuer)
    services.banner = banner
