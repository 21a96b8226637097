"""Consent proof: receipts, checkpoints, Merkle proofs over HTTP, proof bundles and the offline verifier."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from joserfc.util import urlsafe_b64decode as base64url_decode
from starlette.testclient import TestClient

from server.app import create_app
from server.proof import merkle
from server.proof.audit import audit_log
from server.proof.verify_bundle import verify_bundle
from server.settings import Settings
from tests import independent
from tests.helpers.api import bearer, record
from tests.helpers.app import run, services_of
from tests.helpers.clock import Clock
from tests.helpers.paths import TEST_DATA

# The Kantara Consent Receipt v1.1 schema, as published (a copy of shared/standards/).
SCHEMA = json.loads((TEST_DATA / "kantara-consent-receipt-v1_1-schema.json").read_text())


def _jwks(client: TestClient) -> dict[str, Any]:
    return dict(client.get("/.well-known/jwks.json").json())


def _history(client: TestClient, auth: dict[str, str], ref: str = "cust-9") -> None:
    record(
        client,
        auth,
        ref,
        [("offers", "email", "grant"), ("partners", "sms", "grant")],
        ui_snapshot={"kind": "form", "content": "<form>Offers by email <input type=checkbox></form>"},
        evidence={"ip": "198.51.100.23", "user_agent": "UA"},
    )
    record(client, auth, ref, [("offers", "email", "withdraw")], policy="privacy-policy/2/en")
    record(client, auth, "someone-else", [("offers", "sms", "grant")])


def test_receipt_is_signed_and_kantara_shaped(client: TestClient, auth: dict[str, str]) -> None:
    response = record(client, auth, "cust-1", [("partners", "email", "grant")], policy="privacy-policy/2/en")
    body = response.json()
    _, payload = independent.verify_es256(body["receipt"], _jwks(client))
    receipt = json.loads(payload)
    jsonschema.validate(receipt, SCHEMA)
    assert receipt["version"] == "KI-CR-v1.1.0"
    assert receipt["policyUrl"] == "http://testserver/policies/privacy-policy/2/en"
    assert (
        receipt["piiPrincipalId"]
        == client.get("/v1/subjects/cust-1/events", headers=auth).json()["events"][0]["subject"]
    )
    purpose = receipt["services"][0]["purposes"][0]
    assert purpose["thirdPartyDisclosure"] is True and purpose["thirdPartyName"]
    assert purpose["x-eventHash"] == body["events"][0]["hash"]
    listed = client.get("/v1/subjects/cust-1/receipts", headers=auth).json()["receipts"]
    assert [r["receipt"] for r in listed] == [body["receipt"]]


def test_checkpoints_and_proofs_over_http(client: TestClient, auth: dict[str, str]) -> None:
    hashes = []
    for i in range(7):
        hashes += [e["hash"] for e in record(client, auth, f"c{i}", [("offers", "email", "grant")]).json()["events"]]
    first = client.get("/v1/ledger/checkpoints/latest").json()
    _, payload = independent.verify_es256(first["signature"], _jwks(client))
    assert json.loads(payload) == {
        "log_id": "http://testserver",
        "tree_size": 7,
        "root_hash": first["root_hash"],
        "timestamp": first["timestamp"],
    }
    assert first["root_hash"] == independent.mth([bytes.fromhex(h) for h in hashes]).hex()
    for i in range(7, 12):
        hashes += [e["hash"] for e in record(client, auth, f"c{i}", [("offers", "sms", "grant")]).json()["events"]]
    second = client.get("/v1/ledger/checkpoints/latest").json()
    assert second["tree_size"] == 12
    assert client.get("/v1/ledger/checkpoints/7").json()["root_hash"] == first["root_hash"]
    # A size in the documented range [0, 10^15] but with 10 digits or more: no such checkpoint, not a refusal
    for size in ("1000000000", "1" + "0" * 15):
        unknown = client.get(f"/v1/ledger/checkpoints/{size}")
        assert unknown.status_code == 404 and unknown.json()["type"] == "/problems/not-found", unknown.text
    assert client.get("/v1/ledger/checkpoints/1" + "0" * 16).status_code == 422

    consistency = client.get("/v1/ledger/proofs/consistency?from=7&to=12").json()
    leaves = [bytes.fromhex(h) for h in hashes]
    assert [bytes.fromhex(n) for n in consistency["proof"]] == independent.proof(7, leaves)

    events = client.get("/v1/subjects/c3/events", headers=auth).json()["events"]
    inclusion = client.get(f"/v1/ledger/proofs/inclusion?event_id={events[0]['id']}&tree_size=12", headers=auth)
    body = inclusion.json()
    assert [bytes.fromhex(n) for n in body["path"]] == independent.path(body["log_position"], leaves)
    assert merkle.verify_inclusion(
        merkle.leaf_hash(bytes.fromhex(events[0]["hash"])),
        body["log_position"],
        12,
        [bytes.fromhex(n) for n in body["path"]],
        bytes.fromhex(second["root_hash"]),
    )
    checker = bearer(client, "consent:check")
    assert client.get(f"/v1/ledger/proofs/inclusion?event_id={events[0]['id']}", headers=checker).status_code == 403


def _bundle(client: TestClient, auth: dict[str, str], query: str = "", ref: str = "cust-9") -> bytes:
    response = client.get(f"/v1/subjects/{ref}/proof{query}", headers=auth)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    return response.content


def _rewrite(data: bytes, change: Any) -> bytes:
    source = zipfile.ZipFile(io.BytesIO(data))
    files = {name: source.read(name) for name in source.namelist()}
    change(files)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return out.getvalue()


def _verify(tmp_path: Path, data: bytes, name: str = "bundle.zip") -> list[str]:
    path = tmp_path / name
    path.write_bytes(data)
    return verify_bundle(path).failures


def _json_edit(name: str, edit: Any) -> Any:
    def change(files: dict[str, bytes]) -> None:
        value = json.loads(files[name])
        edit(value)
        files[name] = json.dumps(value).encode()

    return change


def _assert_report_shows_each_event(bundle: zipfile.ZipFile) -> None:
    """report.html, the lawyer's view: a row per event with its decision, its text (linked, hash shown) and how."""
    report = bundle.read("report.html").decode()
    rows = report.split("<tbody>")[1].split("</tbody>")[0].split("<tr>")[1:]
    events = json.loads(bundle.read("events.json"))
    assert len(rows) == len(events) > 0
    for row, event in zip(rows, events, strict=True):
        policy = event["policy"]
        for shown in (
            f"<td>{event['seq']}</td>",
            f"{event['purpose']}) / {event['channel']}",
            f"<strong>{event['status']}</strong>",
            f'href="policies/{policy["document"]}/{policy["version"]}/{policy["lang"]}.md"',
            policy["sha256"][:16],
            f"{event['touchpoint']} / {event['method']}",
        ):
            assert shown in row, (shown, row)


def test_an_untouched_bundle_verifies_and_each_corruption_is_named(
    client: TestClient, auth: dict[str, str], tmp_path: Path
) -> None:
    _history(client, auth)
    data = _bundle(client, auth)
    files = zipfile.ZipFile(io.BytesIO(data)).namelist()
    for expected in (
        "manifest.json",
        "manifest.jws",
        "events.json",
        "chain.json",
        "checkpoint.json",
        "proofs/inclusion.json",
        "report.html",
        "VERIFYING.md",
        "state.json",
        "access_log.json",
        "policies/privacy-policy/2/fr.md",
        "policies/privacy-policy/2/en.md",
        "jwks.json",
    ):
        assert expected in files, expected
    assert any(f.startswith("receipts/") for f in files) and any(f.startswith("snapshots/") for f in files)
    assert _verify(tmp_path, data) == []
    _assert_report_shows_each_event(zipfile.ZipFile(io.BytesIO(data)))

    def first_policy(files: dict[str, bytes]) -> None:
        name = next(n for n in files if n.startswith("policies/"))
        files[name] = files[name].replace(b"Demo Shop", b"Demo Sh0p", 1)

    def receipt(files: dict[str, bytes]) -> None:
        name = next(n for n in files if n.startswith("receipts/"))
        head, body, sig = files[name].decode().split(".")
        files[name] = f"{head}.{body}.{sig[:-4]}AAAA".encode()

    def proof_node(proofs: dict[str, Any]) -> None:
        node = proofs["proofs"][0]["path"][0]
        proofs["proofs"][0]["path"][0] = ("0" if node[0] != "0" else "1") + node[1:]

    cases = {
        "event field": (_json_edit("events.json", lambda ev: ev[0].__setitem__("action", "deny")), "event seq"),
        "policy text": (first_policy, "policies/"),
        "receipt": (receipt, "receipts/"),
        "proof node": (_json_edit("proofs/inclusion.json", proof_node), "inclusion proof"),
        "manifest": (_json_edit("manifest.json", lambda m: m.__setitem__("bundle_id", "forged")), "manifest"),
        "missing file": (lambda f: f.pop("chain.json"), "chain.json"),
        "chain link": (_json_edit("chain.json", lambda c: c[0].__setitem__("hash", "0" * 64)), "chain"),
    }
    for name, (change, fragment) in cases.items():
        failures = _verify(tmp_path, _rewrite(data, change), f"{name}.zip")
        assert failures, name
        assert any(fragment in failure for failure in failures), (name, failures)

    # A second, unsigned copy of a signed file placed before the genuine one: what another zip reader shows first.
    genuine = zipfile.ZipFile(io.BytesIO(data))
    forged = json.loads(genuine.read("events.json"))
    forged[0]["action"] = "deny"
    doubled = io.BytesIO()
    with zipfile.ZipFile(doubled, "w") as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns of the duplicate name: that is the point
        archive.writestr("events.json", json.dumps(forged))
        for name in genuine.namelist():
            archive.writestr(name, genuine.read(name))
    failures = _verify(tmp_path, doubled.getvalue(), "doubled.zip")
    assert failures == ["bundle: events.json more than once in the zip (a copy that is not signed)"], failures
    folder = io.BytesIO()  # an entry named as a folder, whose data no file hash covers
    with zipfile.ZipFile(folder, "w") as archive:
        for name in genuine.namelist():
            archive.writestr(name, genuine.read(name))
        archive.writestr("notes/", b"hidden")
    assert _verify(tmp_path, folder.getvalue(), "folder.zip") == ["bundle: notes/ named as folder(s) but hold(s) data"]


def test_bundle_can_be_narrowed_and_is_verified_by_the_cli(
    client: TestClient, auth: dict[str, str], tmp_path: Path
) -> None:
    _history(client, auth)
    data = _bundle(client, auth, "?purpose=partners&channel=sms")
    archive = zipfile.ZipFile(io.BytesIO(data))
    events = json.loads(archive.read("events.json"))
    assert [(e["purpose"], e["channel"]) for e in events] == [("partners", "sms")]
    assert len(json.loads(archive.read("chain.json"))) == 3  # the whole chain, to show continuity
    # [from, to), as the ledger export: an event recorded at `to` is not in it
    third = json.loads(zipfile.ZipFile(io.BytesIO(_bundle(client, auth))).read("events.json"))[2]
    until_third = zipfile.ZipFile(io.BytesIO(_bundle(client, auth, f"?to={third['recorded_at']}")))
    assert [e["seq"] for e in json.loads(until_third.read("events.json"))] == [1, 2]
    # and the state "as of to" is the one those events lead to: it cites none of the events left out
    as_of = json.loads(until_third.read("state.json"))["as_of"]["consents"]
    assert {answer["event_id"] for answer in as_of} - {None} <= {
        e["id"] for e in json.loads(until_third.read("events.json"))
    }
    path = tmp_path / "narrow.zip"
    path.write_bytes(data)
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(_jwks(client)))
    done = subprocess.run(
        [sys.executable, "-m", "server", "proof", "verify", str(path), "--jwks", str(jwks)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "VERDICT: the bundle verifies." in done.stdout and "NOTE" not in done.stdout
    # Without --jwks, the bundle's own keys: the report says what that proves, and where the real ones are.
    own = subprocess.run(
        [sys.executable, "-m", "server", "proof", "verify", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert own.returncode == 0 and "VERDICT: the bundle verifies (with its own keys: see the NOTE)." in own.stdout
    (note,) = [line for line in own.stdout.splitlines() if line.startswith("NOTE")]
    assert "http://testserver/.well-known/jwks.json" in note and "--jwks" in note, note
    other = tmp_path / "other-jwks.json"
    other.write_text(json.dumps({"keys": []}))
    done = subprocess.run(
        [sys.executable, "-m", "server", "proof", "verify", str(path), "--jwks", str(other)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 1 and "does NOT verify" in done.stdout


def test_access_log_records_reads_and_goes_into_the_bundle(client: TestClient, auth: dict[str, str]) -> None:
    _history(client, auth)
    client.get("/v1/subjects/cust-9/events", headers=auth)
    client.get("/v1/subjects/cust-9/consents", headers=auth)
    _bundle(client, auth)
    log = json.loads(zipfile.ZipFile(io.BytesIO(_bundle(client, auth))).read("access_log.json"))
    assert [entry["action"] for entry in log] == ["events_read", "consents_read", "proof_bundle", "proof_bundle"]
    assert all(entry["actor"]["type"] == "client" and entry["actor"]["id"].startswith("cl_") for entry in log)


def test_ledger_export_is_admin_only_and_ends_with_a_checkpoint(client: TestClient) -> None:
    writer = bearer(client, "consent:write")
    for i in range(3):
        record(client, writer, f"customer~{i}", [("offers", "email", "grant")])
    assert client.get("/v1/ledger/export", headers=bearer(client, "proof:read consent:read")).status_code == 403
    response = client.get("/v1/ledger/export", headers=bearer(client, "admin"))
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert len(lines) == 4 and "checkpoint" in lines[-1]
    assert [line["log_position"] for line in lines[:-1]] == [0, 1, 2]
    # pseudonyms only, never the ref ("~" appears in no hash, UUID or base64url signature, so no false alarm)
    assert all("customer~" not in json.dumps(line) for line in lines)


def test_a_time_range_that_ends_before_it_starts_is_refused(client: TestClient, auth: dict[str, str]) -> None:
    """[from, to) with `to` not after `from` is a mistake to say, not an empty bundle or export to hand over."""
    _history(client, auth)
    admin = bearer(client, "admin")
    backwards = "from=2030-01-01T00:00:00Z&to=2020-01-01T00:00:00Z"
    empty = "from=2026-01-01T00:00:00Z&to=2026-01-01T00:00:00Z"
    for url, headers in [("/v1/subjects/cust-9/proof", auth), ("/v1/ledger/export", admin)]:
        for query in (backwards, empty):
            refused = client.get(f"{url}?{query}", headers=headers)
            assert refused.status_code == 422, (url, query, refused.text)
            assert refused.json()["type"] == "/problems/invalid-request" and refused.json()["parameter"] == "to"
        assert client.get(f"{url}?from=2020-01-01T00:00:00Z&to=2030-01-01T00:00:00Z", headers=headers).is_success


@pytest.mark.parametrize("tamper", ["delete", "insert"])
def test_log_audit_detects_deleted_or_inserted_events(client: TestClient, auth: dict[str, str], tamper: str) -> None:
    for i in range(5):
        record(client, auth, f"a{i}", [("offers", "email", "grant")])
    log = services_of(client).log
    run(client, log.checkpoint)
    report = run(client, audit_log, services_of(client).keys, run(client, log.identity))
    assert report.problems == [] and report.entries == 5

    async def delete_event() -> None:
        from tortoise import connections

        conn = connections.get("default")
        dialect = conn.capabilities.dialect
        if dialect == "postgres":
            await conn.execute_script(
                "ALTER TABLE consent_events DISABLE TRIGGER ALL;ALTER TABLE log_entries DISABLE TRIGGER ALL"
            )
        else:
            await conn.execute_script("DROP TRIGGER consent_events_no_delete; PRAGMA foreign_keys = OFF")
        rows = await conn.execute_query_dict("SELECT event_id FROM log_entries WHERE position = 2")
        await conn.execute_query("DELETE FROM log_entries WHERE position = 2")
        marker = "$1" if dialect == "postgres" else "?"
        await conn.execute_query(f"DELETE FROM consent_events WHERE id = {marker}", [rows[0]["event_id"]])

    async def insert_event() -> None:
        from tortoise import connections

        conn = connections.get("default")
        await conn.execute_query(
            "INSERT INTO consent_events (id, subject_id, seq, purpose_id, channel_id, action, status, "
            "policy_version_id, touchpoint, method, actor_type, actor_id, ui_snapshot_sha256, evidence, recorded_at, "
            "valid_until, prev_hash, hash) SELECT '00000000-0000-4000-8000-000000000001', subject_id, seq + 1, "
            "purpose_id, channel_id, action, status, policy_version_id, touchpoint, method, actor_type, actor_id, "
            "ui_snapshot_sha256, evidence, recorded_at, valid_until, hash, "
            # The forged hash must differ from the copied one, whatever its first byte (a fixed 'ab' prefix
            # collided with the UNIQUE constraint once in 256 runs).
            "CASE WHEN substr(hash, 1, 2) = 'ab' THEN 'cd' ELSE 'ab' END || substr(hash, 3) "
            "FROM consent_events ORDER BY recorded_at LIMIT 1"
        )

    run(client, delete_event if tamper == "delete" else insert_event)
    report = run(client, audit_log, services_of(client).keys, run(client, log.identity))
    assert report.problems, tamper
    if tamper == "delete":
        assert any("checkpoint 5" in p or "position 2" in p for p in report.problems), report.problems
    else:
        assert any("inserted out of band" in p for p in report.problems), report.problems


def test_a_key_rotated_by_the_command_is_published_and_used_without_a_restart(
    cli_env: Settings, clock: Clock, tmp_path: Path
) -> None:
    """`keys rotate` and `ledger checkpoint` run beside the server: the checkpoint is signed with the new key, so the
    server must publish it (and sign with it) at once, or every bundle fails to verify until it restarts."""

    def command(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "server", *args], capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    with TestClient(create_app(cli_env, clock=clock)) as client:
        auth = bearer(client)
        record(client, auth, "cust-rot", [("offers", "email", "grant")])
        old = {key["kid"] for key in _jwks(client)["keys"]}
        new = json.loads(command("keys", "rotate"))["kid"]
        assert {key["kid"] for key in _jwks(client)["keys"]} == old | {new}  # published at once
        receipt = record(client, auth, "cust-rot", [("offers", "sms", "grant")]).json()["receipt"]
        assert json.loads(base64url_decode(receipt.split(".")[0].encode()))["kid"] == new  # and signing with it
        command("ledger", "checkpoint")
        assert _verify(tmp_path, _bundle(client, auth, ref="cust-rot")) == []
        # A damaged key file (named to sort last, as the newest would) is left out, not a failure of every signature
        (cli_env.signing_keys_dir / "99999999999999999999-damaged.jwk.json").write_text("{")
        receipt = record(client, auth, "cust-rot", [("offers", "phone", "grant")]).json()["receipt"]
        assert json.loads(base64url_decode(receipt.split(".")[0].encode()))["kid"] == new
        assert {key["kid"] for key in _jwks(client)["keys"]} == old | {new}
