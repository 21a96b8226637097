"""The record of processing activities (GDPR 30(1)): every purpose with what the service knows and what
`purposes.yaml` declares, the recipients as registered, and what is not declared listed as such, never invented."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from starlette.testclient import TestClient

from server.app import create_app
from server.cli import main
from server.recipients import registry
from server.settings import Settings
from tests.databases import POLICY_DIR
from tests.helpers.app import run
from tests.helpers.clock import Clock
from tests.helpers.console import sign_in

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


def _declared() -> dict[str, Any]:
    return dict(yaml.safe_load((POLICY_DIR / "purposes.yaml").read_text(encoding="utf-8")))


def _record(client: TestClient) -> dict[str, Any]:
    answer = client.get("/console/record?format=json")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-disposition"] == 'attachment; filename="record-of-processing.json"'
    return dict(orjson.loads(answer.content))


def test_every_purpose_is_in_the_record_with_its_declarations_and_recipients(client: TestClient, clock: Clock) -> None:
    clock.set(NOW)
    run(client, lambda: registry.add("Newsletter ESP", "https://esp.example/n", NOW, purposes=["newsletter"]))
    run(client, lambda: registry.add("CRM", "https://crm.example/n", NOW))  # every purpose
    run(client, lambda: registry.add("Old SMS gateway", "https://sms.example/n", NOW))
    run(client, lambda: registry.disable("Old SMS gateway", NOW))  # listed still: the data went to it
    sign_in(client, "auditor")
    record = _record(client)
    declared = _declared()
    by_code = {a["code"]: a for a in record["activities"] if a["code"]}
    assert list(by_code) == [p["code"] for p in declared["purposes"]]
    for purpose in declared["purposes"]:
        activity = by_code[purpose["code"]]
        assert activity["name"] == purpose["title"]["en"]
        assert activity["data_categories"] == purpose["record"]["data_categories"]
        assert activity["subject_categories"] == purpose["record"]["subject_categories"]
        assert activity["retention"] == purpose["record"]["retention"].strip()
        for third_party in purpose["third_parties"]:
            assert f"{third_party} (third-party controller)" in activity["recipients"]
        assert "CRM (receives its data; told of withdrawals, GDPR 19)" in activity["recipients"]
        assert (
            "Old SMS gateway (receives its data; told of withdrawals, GDPR 19) (no longer, since 2026-11-30)"
            in activity["recipients"]
        )
    assert "Newsletter ESP (receives its data; told of withdrawals, GDPR 19)" in by_code["newsletter"]["recipients"]
    assert not any("Newsletter ESP" in r for r in by_code["offers"]["recipients"])
    assert "legitimate interest (GDPR 6(1)(f)) on post (instead)" in by_code["offers"]["legal_basis"]
    assert "a consent is valid 1095 days, then asked again" in by_code["newsletter"]["facts"]
    others = [a for a in record["activities"] if a["code"] is None]
    assert [a["name"] for a in others] == [a["name"] for a in declared["record"]["activities"]]
    assert record["security_measures"] == declared["record"]["security_measures"]
    assert record["controller"]["name"] == "Demo Shop SAS" and record["gaps"] == []
    page = client.get("/console/record")
    assert page.status_code == 200 and "Not declared yet" not in page.text
    document = client.get("/console/record?format=md")
    assert document.headers["content-type"].startswith("text/markdown")
    assert "## 1. Newsletter (newsletter)" in document.text and "NOT DECLARED" not in document.text


@pytest.fixture
def bare_policy_dir(tmp_path: Path) -> Path:
    """The demo's policy documents, with the record declared for no purpose but newsletter (transfers: none)."""
    target = tmp_path / "policy_docs"
    shutil.copytree(POLICY_DIR, target)
    declared = _declared()
    del declared["record"]
    for purpose in declared["purposes"]:
        if purpose["code"] == "newsletter":
            purpose["record"] = {"data_categories": ["email address"], "transfers": []}
        else:
            purpose.pop("record", None)
    (target / "purposes.yaml").write_text(yaml.safe_dump(declared, allow_unicode=True), encoding="utf-8")
    return target


def test_what_is_not_declared_is_listed_never_invented(settings: Settings, clock: Clock, bare_policy_dir: Path) -> None:
    app = create_app(settings.with_overrides(policy_dir=bare_policy_dir), clock=clock)
    with TestClient(app, raise_server_exceptions=False) as client:
        sign_in(client, "supervisor")
        record = _record(client)
        gaps = record["gaps"]
        assert "security measures (30(1)(g)) not declared" in gaps
        assert "Newsletter (newsletter): categories of people (30(1)(c)) not declared" in gaps
        assert "Newsletter (newsletter): time limits for erasure (30(1)(f)) not declared" in gaps
        assert not any(g.startswith("Newsletter (newsletter): categories of personal data") for g in gaps)
        assert not any(g.startswith("Newsletter (newsletter): transfers") for g in gaps)  # declared: none
        assert "Demo Shop offers (offers): transfers outside the EU, or none (30(1)(e)) not declared" in gaps
        newsletter = next(a for a in record["activities"] if a["code"] == "newsletter")
        assert (newsletter["transfers"], newsletter["subject_categories"]) == ([], None)
        page = client.get("/console/record")
        assert f"Not declared yet ({len(gaps)})" in page.text
        text = client.get("/console/record?format=md").text
        assert "- Transfers outside the EU (30(1)(e)): none" in text
        assert "- Categories of people (30(1)(c)): NOT DECLARED" in text


MALFORMED: list[tuple[str, Any, str]] = [
    ("record", {"security_measures": "encryption"}, "record.security_measures must be a list of texts"),
    ("record", {"transfers": [{"recipient": "X"}]}, "each of record.transfers needs recipient, country and safeguard"),
    (
        "record",
        {"transfers": [{"recipient": "X", "country": "US", "safeguard": None}]},
        "each of record.transfers needs recipient, country and safeguard",
    ),
    ("record", {"activities": 5}, "record.activities must be a list"),
    ("record", [1], "record must be a mapping"),
]


@pytest.mark.parametrize(("key", "value", "message"), MALFORMED, ids=[case[2][:40] for case in MALFORMED])
def test_a_malformed_declaration_is_a_clear_error(
    settings: Settings,
    clock: Clock,
    bare_policy_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    key: str,
    value: Any,
    message: str,
) -> None:
    declared = yaml.safe_load((bare_policy_dir / "purposes.yaml").read_text(encoding="utf-8"))
    declared[key] = value
    (bare_policy_dir / "purposes.yaml").write_text(yaml.safe_dump(declared, allow_unicode=True), encoding="utf-8")
    app = create_app(settings.with_overrides(policy_dir=bare_policy_dir), clock=clock)
    with TestClient(app, raise_server_exceptions=False) as client:
        sign_in(client, "auditor")
        answer = client.get("/console/record")
        assert answer.status_code == 422, answer.text[:300]
        assert message in answer.text
    if key == "record" and isinstance(value, dict) and "activities" in value:  # the command line, once
        for name, env in {
            "DATABASE_URL": settings.database_url,
            "SECRET_KEY": settings.secret_key,
            "POLICY_DIR": str(bare_policy_dir),
        }.items():
            monkeypatch.setenv(name, env)
        assert main(["record"]) == 2
        assert message in capsys.readouterr().err


def test_typed_text_stays_text_and_undeclared_recipients_are_a_gap(
    settings: Settings, clock: Clock, bare_policy_dir: Path
) -> None:
    declared = yaml.safe_load((bare_policy_dir / "purposes.yaml").read_text(encoding="utf-8"))
    declared["record"] = {
        "security_measures": ["TLS"],
        "transfers": [],
        "activities": [
            {
                "name": "Hotline <b>recordings</b>",
                "description": "- not a list\n---\n1. not a list either\n# not a heading",
                "legal_basis": ["consent"],
                "subject_categories": ["callers"],
                "data_categories": ["voice"],
                "retention": "6 months\n\n## not a heading",
            },
            {"name": "Undescribed", "legal_basis": ["contract"], "recipients": []},
        ],
    }
    (bare_policy_dir / "purposes.yaml").write_text(yaml.safe_dump(declared, allow_unicode=True), encoding="utf-8")
    app = create_app(settings.with_overrides(policy_dir=bare_policy_dir), clock=clock)
    with TestClient(app, raise_server_exceptions=False) as client:
        sign_in(client, "auditor")
        gaps = _record(client)["gaps"]
        assert "Hotline <b>recordings</b>: recipients, or none (30(1)(d)) not declared" in gaps
        assert "Undescribed: its purpose (30(1)(b)) not described" in gaps
        assert not any(g.startswith("Undescribed: recipients") for g in gaps)  # declared: none
        text = client.get("/console/record?format=md").text
        assert "\\<b\\>recordings\\</b\\>" in text and "<b>" not in text
        assert "\n\\- not a list\n\\---\n1\\. not a list either\n\\# not a heading\n" in text
        assert "- Time limits for erasure (30(1)(f)): 6 months \\#\\# not a heading\n" in text


def test_the_command_line_prints_the_record(cli_env: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["record"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("# Record of processing activities (GDPR 30(1))")
    assert "## Security measures (30(1)(g))" in text
    assert main(["record", "--format", "json"]) == 0
    record = orjson.loads(capsys.readouterr().out)
    assert [a["code"] for a in record["activities"] if a["code"]] == [p["code"] for p in _declared()["purposes"]]
