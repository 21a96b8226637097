"""Policies as code: the published list and texts, `policies sync` and its refusals (invariant 2, docs/design.md)."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.testclient import TestClient

from server.app import create_app
from server.models import Channel, ConsentEvent, PolicyVersion, Purpose, PurposeBasisChange, Subject
from server.policies.documents import PolicySourceError, load_tree
from server.policies.sync import PublishedPolicyChanged, SyncReport, sync_policies
from server.settings import Settings
from tests.databases import POLICY_DIR
from tests.helpers.api import bearer, record
from tests.helpers.app import run
from tests.helpers.clock import Clock

SAMPLES = sorted(POLICY_DIR.glob("*/*/*.md"))
KEYS = {"document", "version", "lang", "sha256", "effective_at", "material", "purposes", "url"}


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def label_of(path: Path) -> str:
    return f"{path.parent.parent.name}/{path.parent.name}/{path.stem}"


@pytest.fixture
def policy_copy(tmp_path: Path) -> Path:
    """A private copy of `policy_docs/` that a test may edit."""
    return Path(shutil.copytree(POLICY_DIR, tmp_path / "policy_docs"))


def add_version(root: Path, document: str, source_version: str, new_version: str, effective_at: str) -> list[Path]:
    """Write `document/new_version/{en,fr}.md`, a well-formed copy of `source_version` (a new, unpublished version)."""
    written = []
    for source in sorted((root / document / source_version).glob("*.md")):
        text = source.read_text(encoding="utf-8")
        front, body = text.split("\n---\n", 1)
        lines = []
        for line in front.split("\n"):
            if line.startswith("version:"):
                line = f'version: "{new_version}"'
            elif line.startswith("effective_at:"):
                line = f'effective_at: "{effective_at}"'
            elif line.startswith("material:"):
                line = "material: false"
            lines.append(line)
        target = root / document / new_version / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("\n".join(lines) + "\n---\n" + body, encoding="utf-8")
        written.append(target)
    return written


def change_one_byte(path: Path) -> tuple[str, str]:
    """Edit one byte of a published file's body; returns (old sha256, new sha256)."""
    data = bytearray(path.read_bytes())
    old = hashlib.sha256(data).hexdigest()
    assert data[-2:] == b".\n"
    data[-2] = ord("!")
    path.write_bytes(bytes(data))
    return old, hashlib.sha256(data).hexdigest()


# --- reading published versions ---------------------------------------------------------------------------------------


def test_policy_list_is_public_and_hashes_the_exact_files(client: TestClient) -> None:
    response = client.get("/v1/policies")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    listed = response.json()
    assert len(SAMPLES) == 6
    by_label = {f"{p['document']}/{p['version']}/{p['lang']}": p for p in listed}
    assert sorted(by_label) == sorted(label_of(path) for path in SAMPLES)
    assert len(listed) == 6
    for path in SAMPLES:
        entry = by_label[label_of(path)]
        assert set(entry) >= KEYS
        assert entry["sha256"] == sha256_of(path)
        assert entry["url"] == f"/policies/{label_of(path)}"
        assert entry["effective_at"].endswith("Z")
    for lang in ("fr", "en"):
        v2 = by_label[f"privacy-policy/2/{lang}"]
        assert v2["material"] is True
        assert v2["purposes"] == ["partners"]
        assert v2["effective_at"] == "2026-09-01T00:00:00Z"
        v1 = by_label[f"privacy-policy/1/{lang}"]
        assert v1["material"] is False
        assert v1["purposes"] == ["newsletter", "offers", "partners", "personalisation"]
    assert [p for p in listed if p["material"]] == [by_label["privacy-policy/2/en"], by_label["privacy-policy/2/fr"]]


def test_policy_text_is_the_exact_published_bytes(client: TestClient) -> None:
    path = POLICY_DIR / "privacy-policy" / "2" / "fr.md"
    raw = path.read_bytes()
    digest = hashlib.sha256(raw)

    response = client.get("/policies/privacy-policy/2/fr")
    assert response.status_code == 200
    assert response.content == raw
    assert response.headers["content-type"] == "text/markdown; charset=utf-8"
    assert response.headers["x-content-sha256"] == digest.hexdigest()
    assert response.headers["repr-digest"] == f"sha-256=:{base64.b64encode(digest.digest()).decode()}:"
    assert response.headers["etag"] == f'"{digest.hexdigest()}"'
    assert response.headers["content-language"] == "fr"

    as_json = client.get("/policies/privacy-policy/2/fr", headers={"Accept": "application/json"})
    assert as_json.status_code == 200
    assert as_json.headers["content-type"].startswith("application/json")
    assert as_json.headers["x-content-sha256"] == digest.hexdigest()
    body = as_json.json()
    assert body["content"].encode("utf-8") == raw
    assert (body["document"], body["version"], body["lang"]) == ("privacy-policy", "2", "fr")
    assert body["sha256"] == digest.hexdigest()
    assert body["effective_at"] == "2026-09-01T00:00:00Z"

    longer_than_any_published = (  # a 500 before: the ORM refused values longer than the columns
        "/policies/privacy-policy/2/english-us",
        f"/policies/privacy-policy/{'9' * 33}/fr",
        f"/policies/{'p' * 65}/2/fr",
    )
    for missing in (
        "/policies/privacy-policy/9/fr",
        "/policies/privacy-policy/2/de",
        "/policies/terms/1/fr",
        *longer_than_any_published,
    ):
        refused = client.get(missing)
        assert refused.status_code == 404, missing
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["type"] == "/problems/not-found"
        assert refused.json()["status"] == 404


# --- policies sync ---------------------------------------------------------------------------------------------------


def test_sync_publishes_new_versions_once(client: TestClient, policy_copy: Path) -> None:
    first: SyncReport = run(client, sync_policies, policy_copy)
    assert first.published == []  # the database was synced from the same files
    assert sorted(first.unchanged) == sorted(label_of(p) for p in SAMPLES)

    new_files = add_version(policy_copy, "privacy-policy", "2", "3", "2026-10-01T00:00:00Z")
    second: SyncReport = run(client, sync_policies, policy_copy)
    assert second.published == ["privacy-policy/3/en", "privacy-policy/3/fr"]
    third: SyncReport = run(client, sync_policies, policy_copy)
    assert third.published == []
    assert len(third.unchanged) == 8

    listed = {f"{p['document']}/{p['version']}/{p['lang']}": p for p in client.get("/v1/policies").json()}
    assert len(listed) == 8
    for path in new_files:
        entry = listed[label_of(path)]
        assert entry["sha256"] == sha256_of(path)
        assert entry["material"] is False
        assert entry["effective_at"] == "2026-10-01T00:00:00Z"
        text = client.get(entry["url"])
        assert text.status_code == 200 and text.content == path.read_bytes()


async def _basis_changes() -> list[tuple[str, str, dict[str, str], list[str]]]:
    return [
        (c.purpose_id, c.legal_basis, dict(c.channel_basis), list(c.channels))  # type: ignore[attr-defined]
        for c in await PurposeBasisChange.all().order_by("id")
    ]


def test_sync_records_each_change_of_a_purposes_basis_or_channels(client: TestClient, policy_copy: Path) -> None:
    """Only real changes of the legal basis, a channel's basis or the channels are kept (the audience change feed
    reads them); a sync that changes nothing, or changes only a title, adds none."""
    declared = (policy_copy / "purposes.yaml").read_text()
    run(client, sync_policies, policy_copy)
    assert run(client, _basis_changes) == []
    retitled = declared.replace('en: "Demo Shop offers"', 'en: "Offers from Demo Shop"')
    assert retitled != declared
    (policy_copy / "purposes.yaml").write_text(retitled)
    run(client, sync_policies, policy_copy)
    assert run(client, _basis_changes) == []
    rebased = retitled.replace("channel_basis: {post: legitimate_interest}", "channel_basis: {}")
    (policy_copy / "purposes.yaml").write_text(rebased)
    run(client, sync_policies, policy_copy)
    run(client, sync_policies, policy_copy)
    assert run(client, _basis_changes) == [("offers", "consent", {}, ["email", "sms", "phone", "post"])]


async def _catalogue() -> tuple[list[tuple[str, str, str, str]], list[str], dict[str, dict[str, str]]]:
    versions = [
        (v.document, v.version, v.lang, v.sha256)
        for v in await PolicyVersion.all().order_by("document", "version", "lang")
    ]
    channels = sorted(c.code for c in await Channel.all())
    titles = {p.code: dict(p.titles) for p in await Purpose.all()}
    return versions, channels, titles


def test_sync_refuses_a_changed_published_file_and_writes_nothing(client: TestClient, policy_copy: Path) -> None:
    before = run(client, _catalogue)
    # In the same run, and sorted before the changed file: a new channel, a purpose edit and a new version. The
    # refusal must roll all of them back (one transaction).
    purposes = policy_copy / "purposes.yaml"
    text = purposes.read_text(encoding="utf-8")
    text = text.replace(
        "channels: [email, sms, phone, post, push, web]", "channels: [email, sms, phone, post, push, web, fax]"
    )
    text = text.replace('en: "Newsletter"}', 'en: "Our newsletter"}')
    assert "fax]" in text and "Our newsletter" in text
    purposes.write_text(text, encoding="utf-8")
    added = add_version(policy_copy, "cookie-policy", "1", "2", "2026-10-01T00:00:00Z")
    changed = policy_copy / "privacy-policy" / "2" / "fr.md"
    old, new = change_one_byte(changed)
    assert sorted(policy_copy.glob("*/*/*.md")).index(added[0]) < sorted(policy_copy.glob("*/*/*.md")).index(changed)

    with pytest.raises(PublishedPolicyChanged) as refused:
        run(client, sync_policies, policy_copy)
    message = str(refused.value)
    assert str(changed) in message
    assert old in message and new in message

    assert run(client, _catalogue) == before
    assert len(client.get("/v1/policies").json()) == 6
    assert client.get("/policies/cookie-policy/2/en").status_code == 404
    assert client.get("/policies/privacy-policy/2/fr").content == (POLICY_DIR / "privacy-policy/2/fr.md").read_bytes()


def test_cli_sync_refuses_a_changed_published_file(client: TestClient, database_url: str, policy_copy: Path) -> None:
    added = add_version(policy_copy, "cookie-policy", "1", "2", "2026-10-01T00:00:00Z")
    changed = policy_copy / "privacy-policy" / "2" / "en.md"
    old, new = change_one_byte(changed)
    data_dir = policy_copy.parent / "data"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "POLICY_DIR": str(policy_copy),
        "DATA_DIR": str(data_dir),
        "SECRET_KEY": "s" * 40,
    }
    done = subprocess.run(
        [sys.executable, "-m", "server", "policies", "sync"],
        env=env,
        cwd=policy_copy.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert str(changed) in done.stderr
    assert old in done.stderr and new in done.stderr
    assert "published" not in done.stdout
    assert len(client.get("/v1/policies").json()) == 6
    assert client.get(f"/policies/{label_of(added[0])}").status_code == 404


# --- front matter ----------------------------------------------------------------------------------------------------


def _drop_version(root: Path) -> Path:
    path = root / "privacy-policy" / "2" / "fr.md"
    path.write_text(path.read_text(encoding="utf-8").replace('version: "2"\n', ""), encoding="utf-8")
    return path


def _undeclared_purpose(root: Path) -> Path:
    path = root / "cookie-policy" / "1" / "en.md"
    text = path.read_text(encoding="utf-8").replace("purposes: [essential,", "purposes: [mind_reading, essential,")
    path.write_text(text, encoding="utf-8")
    return path


def _path_mismatch(root: Path) -> Path:
    path = root / "privacy-policy" / "3" / "fr.md"
    path.parent.mkdir()
    shutil.copyfile(root / "privacy-policy" / "2" / "fr.md", path)  # front matter still says version 2
    return path


def _front_matter(root: Path, old: str, new: str) -> Path:
    path = root / "privacy-policy" / "2" / "fr.md"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("mutate", "says"),
    [
        (_drop_version, "lacks ['version']"),
        # YAML reads `"no"` as a string, true in Python: a version published material by mistake, for ever
        (lambda root: _front_matter(root, "material: true", 'material: "no"'), "'material' must be true or false"),
        (lambda root: _front_matter(root, "material: true", "material: 1"), "'material' must be true or false"),
        # a bare string would be read letter by letter
        (lambda root: _front_matter(root, "purposes: [partners]", "purposes: partners"), "'purposes' must be a list"),
        (lambda root: _front_matter(root, "purposes: [partners]", "purposes: 5"), "'purposes' must be a list"),
        (lambda root: _front_matter(root, "---\ndocument:", "---\n42\n---\ndocument:"), "must be a mapping"),
        (_undeclared_purpose, "undeclared purposes ['mind_reading']"),
        (_path_mismatch, "front matter says privacy-policy/2/fr, path says privacy-policy/3/fr"),
    ],
)
def test_front_matter_errors_name_the_file(policy_copy: Path, mutate: Callable[[Path], Path], says: str) -> None:
    load_tree(policy_copy)  # the untouched copy is valid
    path = mutate(policy_copy)
    with pytest.raises(PolicySourceError) as refused:
        load_tree(policy_copy)
    assert str(path) in str(refused.value)
    assert says in str(refused.value)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"purposes": {"newsletter": {}}}, "purposes must be a list of mappings"),
        ({"purposes": ["newsletter"]}, "purposes must be a list of mappings"),
        ({"title": "Newsletter"}, "purpose 'newsletter': title must be a mapping"),
        ({"channel_basis": ["post"]}, "purpose 'newsletter': channel_basis must be a mapping"),
    ],
)
def test_purpose_declarations_of_the_wrong_shape_are_named(
    policy_copy: Path, change: dict[str, Any], says: str
) -> None:
    """A clear error naming the file, not a traceback from deep in the loader."""
    path = policy_copy / "purposes.yaml"
    declared = yaml.safe_load(path.read_text(encoding="utf-8"))
    if "purposes" in change:
        declared.update(change)
    else:
        declared["purposes"][0].update(change)
    path.write_text(yaml.safe_dump(declared, allow_unicode=True), encoding="utf-8")
    with pytest.raises(PolicySourceError) as refused:
        load_tree(policy_copy)
    assert str(path) in str(refused.value) and says in str(refused.value)


# --- invariant 2 (docs/design.md) -------------------------------------------------------------------------------------


async def _ledger_counts() -> tuple[int, int]:
    return await Subject.all().count(), await ConsentEvent.all().count()


def test_a_draft_version_never_synced_cannot_be_cited(settings: Settings, clock: Clock, policy_copy: Path) -> None:
    """The draft file sits in the app's POLICY_DIR, but only the synced catalogue counts."""
    add_version(policy_copy, "privacy-policy", "2", "3", "2026-10-01T00:00:00Z")
    app = create_app(settings.with_overrides(policy_dir=policy_copy), clock=clock)
    with TestClient(app, raise_server_exceptions=False) as client:
        auth = bearer(client)
        before = run(client, _ledger_counts)
        refused = record(client, auth, "cust-draft", [("offers", "email", "grant")], policy="privacy-policy/3/fr")
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["type"] == "/problems/unknown-policy-version"
        assert run(client, _ledger_counts) == before

        report: SyncReport = run(client, sync_policies, policy_copy)
        assert report.published == ["privacy-policy/3/en", "privacy-policy/3/fr"]
        accepted = record(client, auth, "cust-draft", [("offers", "email", "grant")], policy="privacy-policy/3/fr")
        assert accepted.status_code == 201, accepted.text
        assert accepted.json()["events"][0]["policy_version"] == "privacy-policy/3/fr"
