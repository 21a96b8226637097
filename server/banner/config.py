"""A site's banner configuration, built from the catalogue (purposes, cookie-policy versions) and `policy_docs/`.

The texts of one language are the exact text the banner shows. Their RFC 8785 canonical JSON is the UI snapshot
recorded with every choice; the browser hashes `JSON.stringify` of the object it rendered, which is the same bytes
because the config is served with sorted keys and holds only strings (RFC 8785 3.2.2 follows ECMAScript's
serialisation), so the hash proves what was on screen (GDPR 7(1), EDPB 05/2020 104-106).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import rfc8785

from server.banner.sites import Site
from server.errors import NotFound
from server.policies.snapshot import CatalogSnapshot, PolicyInfo, PurposeInfo, version_order

DOCUMENT = "cookie-policy"
WEB = "web"
NECESSARY = "necessary"


@dataclass(frozen=True)
class ShownText:
    """One language of the banner for one cookie-policy version: what is shown, its canonical form and hash."""

    lang: str
    policy: PolicyInfo
    texts: dict[str, Any]
    canonical: str
    sha256: str


@dataclass(frozen=True)
class SiteConfig:
    site: Site
    categories: dict[str, tuple[PurposeInfo, ...]]  # offered category -> its web purposes, in BANNER_CATEGORIES order
    shown: dict[str, ShownText]  # lang -> the current version's text
    stale: tuple[str, ...]
    body: bytes
    etag: str


def build_config(
    site: Site, catalog: CatalogSnapshot, templates: dict[str, dict[str, str]], issuer: str, now: datetime
) -> SiteConfig:
    categories = offered_categories(site, catalog)
    shown: dict[str, ShownText] = {}
    for lang in site.languages:
        policy = catalog.in_force(DOCUMENT, lang, now)
        if policy is not None and policy.lang == lang:  # a banner in one language cites that language's text
            shown[lang] = shown_text(site, catalog, categories, templates[lang], policy, issuer)
    if not shown:
        raise NotFound(f"site {site.id!r} has no {DOCUMENT} in force in {list(site.languages)}", site=site.id)
    stale = stale_versions(catalog, now)
    data = {
        "site": site.id,
        "languages": list(shown),
        "default_lang": site.default_lang if site.default_lang in shown else next(iter(shown)),
        "cookie": site.consent_cookie,
        "cookie_days": site.consent_cookie_days,
        "reprompt_days": site.reprompt_days,
        "record": f"{issuer}/v1/cookie-consents",
        "categories": [{"id": c, "cookies": list(site.cookies.get(c, ()))} for c in categories],
        "policy": {
            lang: {"version": s.policy.version, "url": s.texts["policy_url"], "sha256": s.policy.sha256}
            for lang, s in shown.items()
        },
        "stale": list(stale),
        "texts": {lang: s.texts for lang, s in shown.items()},
        "hash": {lang: s.sha256 for lang, s in shown.items()},
    }
    body = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    return SiteConfig(site, categories, shown, stale, body, f'"{hashlib.sha256(body).hexdigest()[:32]}"')


def offered_categories(site: Site, catalog: CatalogSnapshot) -> dict[str, tuple[PurposeInfo, ...]]:
    """The site's categories that have at least one web purpose, with those purposes (sorted by code)."""
    found: dict[str, tuple[PurposeInfo, ...]] = {}
    for category in site.categories:
        purposes = sorted(
            (p for p in catalog.purposes.values() if p.banner_category == category and WEB in p.channels),
            key=lambda p: p.code,
        )
        if purposes:
            found[category] = tuple(purposes)
    return found


def stale_versions(catalog: CatalogSnapshot, now: datetime) -> tuple[str, ...]:
    """Versions published before the newest material version in force: a choice made under them is asked again."""
    versions = [p for p in catalog.policies.values() if p.document == DOCUMENT and p.effective_at <= now]
    material = [p for p in versions if p.material]
    if not material:
        return ()
    newest = max(material, key=_order)
    return tuple(sorted({p.version for p in versions if _order(p) < _order(newest)}, key=version_order))


def shown_text(
    site: Site,
    catalog: CatalogSnapshot,
    categories: dict[str, tuple[PurposeInfo, ...]],
    template: dict[str, str],
    policy: PolicyInfo,
    issuer: str,
) -> ShownText:
    lang = policy.lang
    third_parties: list[str] = []
    for category, purposes in categories.items():
        if category != NECESSARY:
            third_parties.extend(t for p in purposes for t in p.third_parties if t not in third_parties)
    texts: dict[str, Any] = {key: value for key, value in template.items() if key not in {"controllers", "policy"}}
    texts.update(
        {
            "lang": lang,
            "controllers": template["controllers"].replace("{controllers}", ", ".join(third_parties))
            if third_parties
            else "",
            "policy": template["policy"].replace("{version}", policy.version),
            "policy_url": f"{issuer}/policies/{policy.document}/{policy.version}/{lang}",
            "categories": [
                {
                    "id": category,
                    "title": " / ".join(p.titles.get(lang, p.code) for p in purposes),
                    "description": " ".join(p.descriptions.get(lang, "") for p in purposes).strip(),
                }
                for category, purposes in categories.items()
            ],
        }
    )
    canonical = rfc8785.dumps(texts).decode("utf-8")
    return ShownText(lang, policy, texts, canonical, hashlib.sha256(canonical.encode("utf-8")).hexdigest())


def _order(policy: PolicyInfo) -> tuple[datetime, tuple[int, str]]:
    return (policy.effective_at, version_order(policy.version))
