"""`GET /v1/banner/config`, the banner script, the GPC support resource and `policy_docs/sites.yaml`."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from starlette.testclient import TestClient

from server.app import create_app
from server.banner.bundle import build
from server.banner.sites import load_sites
from server.policies.documents import PolicySourceError
from server.settings import Settings
from tests.databases import POLICY_DIR
from tests.helpers.clock import Clock

ORIGIN = "http://127.0.0.1:8000"


def _config(client: TestClient, **headers: str) -> Any:
    return client.get("/v1/banner/config", params={"site": "demo"}, headers=headers)


def test_config_has_categories_texts_policy_and_hashes(client: TestClient) -> None:
    response = _config(client, Origin=ORIGIN)
    assert response.status_code == 200
    config = response.json()
    assert config["site"] == "demo"
    assert config["languages"] == ["fr", "en"] and config["default_lang"] == "fr"
    assert config["reprompt_days"] == 182, "CNIL: ask again after 6 months"
    assert config["cookie"] == "ds_consent" and config["cookie_days"] == 395
    assert config["record"] == "http://testserver/v1/cookie-consents"
    assert config["stale"] == []
    assert [c["id"] for c in config["categories"]] == ["necessary", "preferences", "analytics", "marketing"]
    assert {c["id"]: c["cookies"] for c in config["categories"]}["marketing"] == ["pbx_uid", "pbx_seg"]
    published = {(p["document"], p["version"], p["lang"]): p for p in client.get("/v1/policies").json()}
    for lang in ("fr", "en"):
        policy = config["policy"][lang]
        assert policy["version"] == "1"
        assert policy["sha256"] == published[("cookie-policy", "1", lang)]["sha256"]
        assert policy["url"] == f"http://testserver/policies/cookie-policy/1/{lang}"
        texts = config["texts"][lang]
        assert texts["lang"] == lang and texts["policy_url"] == policy["url"]
        assert [c["id"] for c in texts["categories"]] == [c["id"] for c in config["categories"]]
        assert "Pubexemple Média SAS" in texts["controllers"], "third parties are named on the first layer"
        # The hash is over the RFC 8785 form, which is what JSON.stringify gives for the parsed object.
        assert config["hash"][lang] == hashlib.sha256(rfc8785.dumps(texts)).hexdigest()
        as_stringify = json.dumps(texts, ensure_ascii=False, separators=(",", ":")).encode()
        assert hashlib.sha256(as_stringify).hexdigest() == config["hash"][lang]
    fr = config["texts"]["fr"]
    assert (fr["accept"], fr["reject"], fr["customise"]) == ("Tout accepter", "Tout refuser", "Personnaliser")
    assert fr["categories"][2] == {
        "id": "analytics",
        "title": "Mesure d'audience",
        "description": fr["categories"][2]["description"],
    }
    assert fr["policy"] == "Politique de cookies (version 1)"


def test_config_is_cacheable_and_cors_limited_to_the_sites_origins(client: TestClient) -> None:
    allowed = _config(client, Origin=ORIGIN)
    assert allowed.headers["cache-control"] == "public, max-age=300"
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    assert "Origin" in allowed.headers["vary"]
    other = _config(client, Origin="https://evil.example")
    assert other.status_code == 200 and "access-control-allow-origin" not in other.headers
    assert "Origin" in other.headers["vary"]
    etag = allowed.headers["etag"]
    again = _config(client, Origin=ORIGIN, **{"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["access-control-allow-origin"] == ORIGIN


def test_unknown_or_missing_site_is_a_problem(client: TestClient) -> None:
    unknown = client.get("/v1/banner/config", params={"site": "nope"})
    assert unknown.status_code == 404 and unknown.json()["type"] == "/problems/unknown-site"
    missing = client.get("/v1/banner/config")
    assert missing.status_code == 422 and missing.headers["content-type"] == "application/problem+json"


def test_the_script_is_served_short_cached_and_under_an_immutable_hashed_url(client: TestClient) -> None:
    plain = client.get("/widgets/banner.js", headers={"Accept-Encoding": "identity"})
    assert plain.status_code == 200
    assert plain.headers["content-type"] == "text/javascript; charset=utf-8"
    assert plain.headers["cache-control"] == "public, max-age=300"
    assert plain.headers["x-content-type-options"] == "nosniff"
    assert plain.content == build().js
    digest = hashlib.sha256(plain.content).hexdigest()[:16]
    assert plain.headers["etag"] == f'"{digest}"'
    assert client.get("/widgets/banner.js", headers={"If-None-Match": f'"{digest}"'}).status_code == 304
    compressed = client.get("/widgets/banner.js", headers={"Accept-Encoding": "gzip"})
    assert compressed.headers["content-encoding"] == "gzip" and compressed.content == plain.content
    assert int(compressed.headers["content-length"]) == len(gzip.compress(plain.content, 9, mtime=0))
    assert plain.headers["link"] == f'</widgets/banner.{digest}.js>; rel="canonical"'
    pinned = client.get(f"/widgets/banner.{digest}.js")
    assert pinned.status_code == 200 and pinned.content == plain.content
    assert pinned.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert pinned.headers["access-control-allow-origin"] == "*", "usable with Subresource Integrity"
    assert client.get("/widgets/banner.0123456789abcdef.js").status_code == 404
    assert b'"__CSS__"' not in plain.content and b"#ckb{" in plain.content, "the CSS is inlined"


def test_gpc_support_resource(client: TestClient) -> None:
    response = client.get("/.well-known/gpc.json")
    assert response.status_code == 200
    assert response.json() == {"gpc": True, "lastUpdate": "2026-11-29"}
    assert response.headers["content-type"] == "application/json"


def test_demo_page_outside_production_only(settings: Settings, clock: Clock) -> None:
    with TestClient(create_app(settings, clock=clock)) as client:
        page = client.get("/demo/banner")
        assert page.status_code == 200
        assert 'src="http://testserver/widgets/banner.js" data-site="demo"' in page.text
        assert client.get("/demo/banner/analytics.js").status_code == 200
        assert client.get("/demo/banner/secret.txt").status_code == 404
    production = settings.with_overrides(environment="production")
    with TestClient(create_app(production, clock=clock), raise_server_exceptions=False) as client:
        assert client.get("/demo/banner").status_code == 404


def test_the_demo_site_allows_the_servers_own_origin_outside_production(settings: Settings, clock: Clock) -> None:
    """The demo page is served from PUBLIC_URL, on whatever port the server runs: its choices must be recorded there
    too (sites.yaml lists the default port's origins only). In production the demo site keeps exactly its list."""
    own = "http://127.0.0.1:8722"
    for environment, allowed in [("development", True), ("production", False)]:
        served = settings.with_overrides(public_url=own + "/", environment=environment)
        with TestClient(create_app(served, clock=clock)) as client:
            config = _config(client, Origin=own)
            assert config.status_code == 200
            assert (config.headers.get("access-control-allow-origin") == own) is allowed, environment
            assert _config(client, Origin=ORIGIN).headers["access-control-allow-origin"] == ORIGIN
            assert "access-control-allow-origin" not in _config(client, Origin="http://127.0.0.1:8723").headers


# --- policy_docs/sites.yaml (no database) ---------------------------------------------------------------------------


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    return Path(shutil.copytree(POLICY_DIR, tmp_path / "policy_docs"))


def _edit(docs: Path, old: str, new: str) -> None:
    path = docs / "sites.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('"http://localhost:8000"', '"http://*.example.com"', "exact scheme://host"),
        ('"http://localhost:8000"', '"http://localhost:8000/"', "exact scheme://host"),
        ('"http://localhost:8000"', '"HTTP://LOCALHOST:8000"', "lower case"),
        ("languages: [fr, en]", "languages: [fr, de]", "banner/de.yaml"),
        ("reprompt_days: 182", "reprompt_days: 400", "reprompt_days"),
        ("marketing: [pbx_uid, pbx_seg]", "social: [x]", "does not offer"),
        ("consent_cookie: ds_consent", "consent_cookie: 'bad name'", "consent_cookie"),
    ],
)
def test_sites_yaml_errors_name_the_file_and_the_value(docs: Path, old: str, new: str, message: str) -> None:
    _edit(docs, old, new)
    with pytest.raises(PolicySourceError, match=r"sites\.yaml") as refused:
        load_sites(docs)
    assert message in str(refused.value)


def test_no_sites_yaml_means_no_site(docs: Path) -> None:
    (docs / "sites.yaml").unlink()
    assert load_sites(docs).sites == {}


def test_banner_texts_must_be_complete(docs: Path) -> None:
    path = docs / "banner" / "en.yaml"
    path.write_text(path.read_text().replace('reject: "Reject all"\n', ""))
    with pytest.raises(PolicySourceError, match=r"en\.yaml: missing or empty texts \['reject'\]"):
        load_sites(docs)
