"""What one app process keeps for the banner: the sites and texts from `policy_docs/`, the built script, the rate
limits, and each site's configuration for the catalogue snapshot it was built from."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from server.banner.bundle import WIDGET_DIR, Bundle, build
from server.banner.config import SiteConfig, build_config
from server.banner.errors import UnknownSite
from server.banner.sites import Site, SiteTree, load_sites
from server.limits import Limiter, Rule
from server.policies.catalog import Catalog
from server.policies.snapshot import CatalogSnapshot


@dataclass(frozen=True)
class BannerLimits:
    """The record's budgets: per consent id (one browser), and a generous ceiling per network (/24 or /48) that
    the visitors behind one NAT or corporate proxy share. Both fail open: a lost limit is better than a lost proof."""

    limiter: Limiter
    per_consent: Rule
    per_network: Rule

    @classmethod
    def of(cls, limiter: Limiter, per_consent: int, per_network: int) -> BannerLimits:
        return cls(limiter, Rule("banner-consent", per_consent, 60), Rule("banner-network", per_network, 60))


@dataclass
class BannerService:
    tree: SiteTree
    bundle: Bundle
    limits: BannerLimits
    catalog: Catalog
    issuer: str
    clock: Callable[[], datetime]
    _configs: dict[str, tuple[CatalogSnapshot, datetime, SiteConfig]] = field(default_factory=dict)

    @classmethod
    def load(
        cls,
        policy_dir: Path,
        limits: BannerLimits,
        catalog: Catalog,
        issuer: str,
        clock: Callable[[], datetime],
        widget_dir: Path = WIDGET_DIR,
    ) -> BannerService:
        return cls(load_sites(policy_dir), build(widget_dir), limits, catalog, issuer, clock)

    @property
    def origins(self) -> frozenset[str]:
        """Every site's origins: a preflight names no site, so it is answered for any of them."""
        return frozenset(o for site in self.tree.sites.values() for o in site.origins)

    def site(self, site_id: str | None, *, status: int = 422) -> Site:
        site = self.tree.sites.get(site_id or "")
        if site is None:
            shown = (site_id or "")[:64]
            raise UnknownSite(f"no site {shown!r} in policy_docs/sites.yaml", status=status, parameter="site")
        return site

    async def config(self, site: Site) -> SiteConfig:
        """The site's configuration, rebuilt when the catalogue snapshot changes (every CATALOG_TTL at most) and at
        least once a minute (a version published earlier becomes current at its `effective_at`)."""
        snapshot = await self.catalog.get()
        now = self.clock()
        cached = self._configs.get(site.id)
        if cached is not None and cached[0] is snapshot and 0 <= (now - cached[1]).total_seconds() < 60:
            return cached[2]
        config = build_config(site, snapshot, self.tree.texts, self.issuer, now)
        self._configs[site.id] = (snapshot, now, config)
        return config
