"""Files the preference center ships: the vendored htmx (pinned by hash), the gettext catalogues (complete in both
languages), the policy diff, and the routes that serve the static files, the embed loader and the dev pages."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from starlette.testclient import TestClient

from preference_center.diff import section_diff
from server.i18n import choose_language, from_accept_language
from server.settings import Settings
from tests.databases import POLICY_DIR
from tests.helpers.app import services_of
from tests.helpers.paths import REPO

PACKAGE = REPO / "preference_center"
STATIC = PACKAGE / "static"
POLICIES = POLICY_DIR / "privacy-policy"


def test_vendored_htmx_matches_its_recorded_version_and_hash() -> None:
    record = (STATIC / "VENDORED.md").read_text()
    row = re.search(
        r"^\| `htmx\.min\.js` \| `htmx\.org` \(npm registry\) \| ([0-9.]+) \| .* \| `([0-9a-f]{64})` \|$", record, re.M
    )
    assert row, "VENDORED.md records htmx.min.js with its version and SHA-256"
    assert row.group(1) == "2.0.11"
    assert hashlib.sha256((STATIC / "htmx.min.js").read_bytes()).hexdigest() == row.group(2)


def _catalog(lang: str) -> dict[str, str]:
    with (PACKAGE / "translations" / lang / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        return {str(m.id): str(m.string) for m in read_po(handle) if m.id}


def test_every_string_is_in_both_catalogues_and_translated_in_french() -> None:
    method_map = [
        ("templates/**.html", "jinja2.ext:babel_extract"),
        ("templates/**.txt", "jinja2.ext:babel_extract"),
        ("**.py", "python"),
    ]
    options = {"templates/**.html": {"extensions": "jinja2.ext.i18n"}, "templates/**.txt": {}}
    keywords = {"_": None, "gettext": (2,), "N_": None}
    extracted = {
        message
        for _, _, message, _, _ in extract_from_dir(PACKAGE, method_map, options, keywords)
        if isinstance(message, str) and message
    }
    assert len(extracted) > 100
    french, english = _catalog("fr"), _catalog("en")
    assert not extracted - set(english), "run pybabel extract + update (preference_center/babel.cfg)"
    untranslated = sorted(m for m in extracted if not french.get(m))
    assert not untranslated, untranslated
    for msgid, msgstr in french.items():  # the same placeholders on both sides
        assert sorted(re.findall(r"%\(\w+\)s", msgid)) == sorted(re.findall(r"%\(\w+\)s", msgstr)), msgid


def test_language_negotiation() -> None:
    assert from_accept_language("de-DE, en-GB;q=0.8, fr;q=0.9") == "fr"
    assert from_accept_language("en;q=0, de") is None
    assert choose_language(None, None, None) == "fr"
    assert choose_language(None, "en_GB", "fr") == "en"
    assert choose_language("fr", "en", "en") == "fr"
    assert choose_language("xx", None, "en-US") == "en"


def test_section_diff_of_the_material_privacy_policy() -> None:
    old, new = (POLICIES / "1" / "en.md").read_text(), (POLICIES / "2" / "en.md").read_text()
    diff = {section.heading: section for section in section_diff(old, new)}
    # v2 also moves phone offers to consent (loi n. 2025-594), in "Purposes and legal bases"
    assert {h for h, s in diff.items() if s.status != "equal"} == {
        "Partners",
        "Purposes and legal bases",
        "What changed",
    }
    partners = diff["Partners"]
    added = [b for b in partners.blocks if b.status == "added"]
    assert [b.pieces[0].text for b in added] == ["Assurances Sereine SA (home and travel insurance)."]
    changed = partners.blocks[0]
    assert changed.status == "changed"
    assert ("insert", " and phone number") in [(p.kind, p.text) for p in changed.pieces]
    assert section_diff(old, old) == [s for s in section_diff(old, old) if s.status == "equal"]
    gone = section_diff("## A\n\nx\n\n## B\n\ny\n", "## A\n\nx\n")
    assert [(s.heading, s.status) for s in gone] == [("A", "equal"), ("B", "removed")]


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    return settings.with_overrides(mail_dir=tmp_path / "mail", embed_origins=("https://shop.example",))


def test_static_files_embed_loader_and_dev_pages(client: TestClient) -> None:
    htmx = client.get("/preferences/static/htmx.min.js")
    assert htmx.status_code == 200 and htmx.headers["content-type"].startswith("text/javascript")
    assert htmx.headers["x-content-type-options"] == "nosniff"
    assert client.get("/preferences/static/preferences.css").status_code == 200
    assert client.get("/preferences/static/VENDORED.md").status_code == 404
    assert client.get("/preferences/static/..%2Fcenter.py").status_code == 404
    embed = client.get("/widgets/embed.js")
    assert embed.status_code == 200 and "preference-center:resize" in embed.text
    page = client.get("/demo")
    assert page.status_code == 200 and 'src="/widgets/embed.js" data-token="' in page.text
    assert "frame-ancestors 'self' https://shop.example" in page.headers["content-security-policy"]
    assert client.get("/dev/mail").status_code == 200
    assert client.get("/dev/mail/../../secret.key").status_code == 404


def test_dev_pages_do_not_exist_in_production(settings: Settings) -> None:
    from server.app import create_app

    production = settings.with_overrides(environment="production")
    with TestClient(create_app(production), raise_server_exceptions=False) as client:
        for path in ("/demo", "/dev/mail", "/dev/mail/00000000000000000001-abcdef01.eml"):
            assert client.get(path).status_code == 404, path


def test_only_allowed_origins_get_the_height_of_the_embedded_page(client: TestClient) -> None:
    token, _ = services_of(client).links.issue("cust-embed", "preferences")
    params = {"token": token, "embed": "1"}
    allowed = client.get("/preferences", params={**params, "parent_origin": "https://shop.example"})
    assert 'data-parent-origin="https://shop.example"' in allowed.text
    assert 'class="pc-embedded"' in allowed.text
    assert "set-cookie" not in allowed.headers, "no session cookie inside a third-party frame"
    assert 'name="embed" value="1"' in allowed.text, "forms stay in the frame"
    refused = client.get("/preferences", params={**params, "parent_origin": "https://evil.example"})
    assert "data-parent-origin" not in refused.text
    assert "frame-ancestors 'self' https://shop.example" in refused.headers["content-security-policy"]


def test_in_the_embed_the_rights_link_opens_a_new_tab(client: TestClient) -> None:
    """The request pages may not be framed (`frame-ancestors 'none'`): from the iframe, the link leaves it."""
    token, _ = services_of(client).links.issue("cust-embed", "preferences")
    rights = re.compile(r'<a href="/requests\?token=[^"]+"([^>]*)>([^<]*)(<span class="pc-vh">([^<]*)</span>)?</a>')
    embedded = client.get("/preferences", params={"token": token, "embed": "1", "lang": "en"}).text
    match = rights.search(embedded)
    assert match, "the rights link"
    assert match.group(1) == ' target="_blank" rel="noopener"'
    assert match.group(4) == " (opens in a new tab)", "said to screen readers too"
    framed = client.get(match.group(0).split('"')[1].replace("&amp;", "&"))
    assert "frame-ancestors 'none'" in framed.headers["content-security-policy"], "why it cannot stay in the frame"
    top_level = rights.search(client.get("/preferences", params={"token": token, "lang": "en"}).text)
    assert top_level and top_level.group(1) == "" and top_level.group(3) is None, "a top-level page keeps the tab"
