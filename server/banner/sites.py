"""Reading `policy_docs/sites.yaml` (the sites that embed the banner) and `policy_docs/banner/<lang>.yaml` (its texts).

Both are policy as code, read once when the app is built; every error names the file and the value refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from server.policies.documents import BANNER_CATEGORIES, PolicySourceError

TEXT_KEYS = (
    "title",
    "body",
    "controllers",
    "policy",
    "accept",
    "reject",
    "customise",
    "save",
    "close",
    "prefs_title",
    "prefs_body",
    "always_on",
    "gpc",
    "reopen",
    "saved",
)
_ID = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")
_LANG = re.compile(r"^[a-z]{2}$")
_COOKIE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}\*?$")
DEFAULT_REPROMPT_DAYS = 182  # CNIL 2020-092 good practice: ask again after 6 months
DEFAULT_COOKIE_DAYS = 395  # 13 months at most (CNIL 2020-091 art. 5)


@dataclass(frozen=True)
class Site:
    id: str
    name: str
    origins: frozenset[str]
    languages: tuple[str, ...]
    default_lang: str
    consent_cookie: str
    consent_cookie_days: int
    reprompt_days: int
    categories: tuple[str, ...]
    cookies: dict[str, tuple[str, ...]]


@dataclass(frozen=True)
class SiteTree:
    sites: dict[str, Site]
    texts: dict[str, dict[str, str]]  # lang -> key -> text (with placeholders)
    gpc_last_update: str


DEMO_SITE = "demo"  # the site of the demo page at /demo/banner


def with_origin(tree: SiteTree, site_id: str, url: str) -> SiteTree:
    """`tree` with the origin of `url` (scheme://host[:port], lower case) allowed for `site_id`, if that site exists."""
    site = tree.sites.get(site_id)
    if site is None:
        return tree
    parts = urlsplit(url)
    origin = f"{parts.scheme}://{parts.netloc}".lower()
    return replace(tree, sites={**tree.sites, site_id: replace(site, origins=site.origins | {origin})})


def load_sites(root: Path) -> SiteTree:
    """`root/sites.yaml` and `root/banner/*.yaml`; no sites.yaml means no site (the banner is simply not offered)."""
    path = root / "sites.yaml"
    texts = {p.stem: _texts(p) for p in sorted((root / "banner").glob("*.yaml"))}
    if not path.is_file():
        return SiteTree({}, texts, "")
    data = _yaml(path)
    sites: dict[str, Site] = {}
    for raw in data.get("sites") or []:
        site = _site(path, raw)
        if site.id in sites:
            raise PolicySourceError(f"{path}: site {site.id!r} is declared twice")
        missing = [lang for lang in site.languages if lang not in texts]
        if missing:
            raise PolicySourceError(
                f"{path}: site {site.id!r} needs banner texts {[f'banner/{m}.yaml' for m in missing]}"
            )
        sites[site.id] = site
    last_update = str(data.get("gpc_last_update", ""))
    if last_update and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", last_update):
        raise PolicySourceError(f"{path}: gpc_last_update {last_update!r} is not a YYYY-MM-DD date")
    return SiteTree(sites, texts, last_update)


def _site(path: Path, raw: Any) -> Site:
    if not isinstance(raw, dict):
        raise PolicySourceError(f"{path}: each site is a mapping, got {raw!r}")
    site_id = str(raw.get("id", ""))
    where = f"{path}: site {site_id!r}"
    if not _ID.fullmatch(site_id):
        raise PolicySourceError(f"{where}: id must be lower-case letters, digits, '-' or '_'")
    origins = frozenset(_origin(where, str(o)) for o in raw.get("origins") or [])
    languages = tuple(str(lang) for lang in raw.get("languages") or [])
    if not languages or not all(_LANG.fullmatch(lang) for lang in languages):
        raise PolicySourceError(f"{where}: languages {languages} must be two-letter codes, at least one")
    default_lang = str(raw.get("default_lang", languages[0]))
    if default_lang not in languages:
        raise PolicySourceError(f"{where}: default_lang {default_lang!r} is not one of {languages}")
    categories = tuple(str(c) for c in raw.get("categories") or BANNER_CATEGORIES)
    unknown = set(categories) - set(BANNER_CATEGORIES)
    if unknown:
        raise PolicySourceError(f"{where}: categories {sorted(unknown)} are not banner categories {BANNER_CATEGORIES}")
    cookies: dict[str, tuple[str, ...]] = {}
    for category, names in (raw.get("cookies") or {}).items():
        if category not in categories:
            raise PolicySourceError(f"{where}: cookies listed for {category!r}, which the site does not offer")
        cookies[str(category)] = tuple(str(n) for n in names or [])
        bad = [n for n in cookies[str(category)] if not _COOKIE.fullmatch(n)]
        if bad:
            raise PolicySourceError(f"{where}: cookie names {bad} are not valid (a name, or a prefix ending in '*')")
    consent_cookie = str(raw.get("consent_cookie", "ds_consent"))
    if not _COOKIE.fullmatch(consent_cookie) or consent_cookie.endswith("*"):
        raise PolicySourceError(f"{where}: consent_cookie {consent_cookie!r} is not a cookie name")
    return Site(
        id=site_id,
        name=str(raw.get("name", site_id)),
        origins=origins,
        languages=languages,
        default_lang=default_lang,
        consent_cookie=consent_cookie,
        consent_cookie_days=_days(where, "consent_cookie_days", raw.get("consent_cookie_days", DEFAULT_COOKIE_DAYS)),
        reprompt_days=_days(where, "reprompt_days", raw.get("reprompt_days", DEFAULT_REPROMPT_DAYS)),
        categories=tuple(c for c in BANNER_CATEGORIES if c in categories),
        cookies=cookies,
    )


def _origin(where: str, value: str) -> str:
    """An exact origin as browsers serialise it in the Origin header: scheme://host[:port], lower case, no path."""
    parts = urlsplit(value)
    if (
        parts.scheme not in {"http", "https"}
        or not parts.hostname
        or "*" in value
        or parts.path
        or parts.query
        or parts.fragment
        or parts.username is not None
        or value != value.lower()
    ):
        raise PolicySourceError(f"{where}: origin {value!r} must be an exact scheme://host[:port] in lower case")
    return value


def _days(where: str, name: str, value: Any) -> int:
    if not isinstance(value, int) or not 1 <= value <= 395:
        raise PolicySourceError(f"{where}: {name} {value!r} must be a whole number of days from 1 to 395")
    return value


def _texts(path: Path) -> dict[str, str]:
    data = _yaml(path)
    if data.get("lang") != path.stem:
        raise PolicySourceError(f"{path}: lang {data.get('lang')!r} must be the file name {path.stem!r}")
    missing = [key for key in TEXT_KEYS if not isinstance(data.get(key), str) or not data[key].strip()]
    if missing:
        raise PolicySourceError(f"{path}: missing or empty texts {missing}")
    return {key: str(data[key]) for key in TEXT_KEYS}


def _yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise PolicySourceError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise PolicySourceError(f"{path}: expected a mapping at the top level")
    return data
