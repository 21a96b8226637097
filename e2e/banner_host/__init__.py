"""A demo shop on its own origin embedding the banner of a live consent server, for the banner's browser tests.

`banner_site(tmp)` starts a static host server (the shop), writes a private copy of `policy_docs/` whose `demo` site
lists exactly that host's origin (production sites list exact origins; nothing is wildcarded for tests), starts the
consent server on that copy, and writes the shop's pages from `widgets/banner/demo/` (the page `/demo/banner` also
serves): `fr.html` (<html lang="fr">) and `en.html`.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import yaml

from e2e.conftest import REPO, HostServer, LiveServer, start_server, static_server, stop_server

DEMO = REPO / "widgets" / "banner" / "demo"


@dataclass
class BannerSite:
    api: LiveServer
    host: HostServer
    policy_dir: Path
    _auth: dict[str, str] = field(default_factory=dict)

    def page(self, lang: str = "fr") -> str:
        return f"{self.host.url}/{lang}.html"

    def config(self) -> dict[str, Any]:
        response = httpx.get(f"{self.api.url}/v1/banner/config", params={"site": "demo"})
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    def events(self, consent_id: str) -> list[dict[str, Any]]:
        """The visitor's ledger, read through the real API with a real token."""
        if not self._auth:
            self._auth = self.api.token("consent:read")
        response = httpx.get(f"{self.api.url}/v1/subjects/{consent_id}/events", headers=self._auth)
        response.raise_for_status()
        events: list[dict[str, Any]] = response.json()["events"]
        return events


def policy_copy(directory: Path, origin: str) -> Path:
    """A copy of policy_docs/ whose `demo` site allows exactly `origin`."""
    target = Path(shutil.copytree(REPO / "policy_docs", directory))
    sites_path = target / "sites.yaml"
    sites = yaml.safe_load(sites_path.read_text(encoding="utf-8"))
    for site in sites["sites"]:
        if site["id"] == "demo":
            site["origins"] = [origin]
    sites_path.write_text(yaml.safe_dump(sites, allow_unicode=True), encoding="utf-8")
    return target


def write_pages(root: Path, api_url: str) -> None:
    page = (DEMO / "index.html").read_text(encoding="utf-8").replace("{{API}}", api_url).replace("{{ASSETS}}", ".")
    (root / "fr.html").write_text(page, encoding="utf-8")
    (root / "en.html").write_text(page.replace('<html lang="fr">', '<html lang="en">'), encoding="utf-8")
    for asset in ("analytics.js", "ad.html"):
        shutil.copyfile(DEMO / asset, root / asset)


@contextlib.contextmanager
def banner_site(tmp: Path) -> Iterator[BannerSite]:
    (tmp / "host").mkdir()
    (tmp / "data").mkdir()
    with static_server(tmp / "host") as host:
        policies = policy_copy(tmp / "policy_docs", host.url)
        # Every test visit comes from 127.0.0.1: lift the per-network budget (the flood test is in tests/).
        api = start_server(tmp / "data", {"POLICY_DIR": str(policies), "COOKIE_RATE_PER_MINUTE": "100000"})
        try:
            write_pages(host.root, api.url)
            yield BannerSite(api, host, policies)
        finally:
            stop_server(api)


def stored_choice(page: Any) -> dict[str, Any] | None:
    """The banner's first-party cookie, decoded."""
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    if "ds_consent" not in cookies:
        return None
    value: dict[str, Any] = json.loads(unquote(cookies["ds_consent"]))
    return value
