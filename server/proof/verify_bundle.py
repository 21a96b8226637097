"""`python -m server proof verify BUNDLE.zip [--jwks FILE]`: check a proof bundle offline.

Uses no database and no network: only the zip, and optionally a JWKS obtained independently (e.g. downloaded
earlier from /.well-known/jwks.json), which then takes precedence over the bundle's own jwks.json.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import rfc8785
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from server.auth.keys import ALGORITHM
from server.ledger.chain import GENESIS
from server.proof import merkle
from server.proof.log import checkpoint_payload

SIGNED = {"manifest.json", "manifest.jws"}


@dataclass
class Verdict:
    checks: list[tuple[bool, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the verdict rests on, which a reader must know

    def ok(self, message: str) -> None:
        self.checks.append((True, message))

    def fail(self, message: str) -> None:
        self.checks.append((False, message))

    @property
    def passed(self) -> bool:
        return all(ok for ok, _ in self.checks) and bool(self.checks)

    @property
    def failures(self) -> list[str]:
        return [message for ok, message in self.checks if not ok]


def verify_bundle(path: Path, jwks: dict[str, Any] | None = None) -> Verdict:
    verdict = Verdict()
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        verdict.fail(f"bundle: not a readable zip ({exc})")
        return verdict
    with archive:
        names = archive.namelist()
        # A zip may hold two entries under one name; a reader shows one of them, and this one kept the last. An
        # unsigned copy placed first would be what another tool shows: every name must be there once.
        repeated = sorted(name for name, count in Counter(names).items() if count > 1)
        if repeated:
            verdict.fail(f"bundle: {', '.join(repeated)} more than once in the zip (a copy that is not signed)")
            return verdict
        folders_with_data = [info.filename for info in archive.infolist() if info.is_dir() and info.file_size]
        if folders_with_data:
            verdict.fail(f"bundle: {', '.join(folders_with_data)} named as folder(s) but hold(s) data")
            return verdict
        files = {}
        for name in names:
            if name.endswith("/"):
                continue
            try:
                files[name] = archive.read(name)
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError) as exc:
                # A bad CRC, a truncated or corrupt member: that member is reported and left out, the rest checked.
                verdict.fail(f"{name}: damaged in the zip, cannot be read ({type(exc).__name__}: {exc})")
    _Checker(files, verdict, jwks).run()
    return verdict


class _Checker:
    def __init__(self, files: dict[str, bytes], verdict: Verdict, jwks: dict[str, Any] | None) -> None:
        self.files = files
        self.v = verdict
        self.external_jwks = jwks

    def run(self) -> None:
        manifest = self._manifest()
        if manifest is None:
            return
        self._file_hashes(manifest)
        checkpoint = self._checkpoint()
        chain = self._chain()
        events = self._events(chain)
        if checkpoint is not None and events is not None:
            self._inclusion(events, checkpoint)
        if events is not None:
            self._texts(events)
            self._receipts(events)

    def _json(self, name: str) -> Any:
        if name not in self.files:
            self.v.fail(f"{name}: missing from the bundle")
            return None
        try:
            return json.loads(self.files[name])
        except ValueError as exc:
            self.v.fail(f"{name}: not valid JSON ({exc})")
            return None

    def _keys(self) -> KeySet | None:
        data = self.external_jwks if self.external_jwks is not None else self._json("jwks.json")
        try:
            return KeySet.import_key_set(data)  # type: ignore[arg-type]  # checked by joserfc, errors caught
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            self.v.fail(f"jwks: unusable key set ({exc})")
            return None

    def _verify_jws(self, token: bytes | str, what: str) -> bytes | None:
        keys = self._keys()
        if keys is None:
            return None
        try:
            payload = jws.deserialize_compact(token, keys, algorithms=[ALGORITHM]).payload
        except (JoseError, ValueError, KeyError, TypeError) as exc:
            self.v.fail(f"{what}: signature does not verify ({type(exc).__name__})")
            return None
        return payload

    def _manifest(self) -> dict[str, Any] | None:
        if "manifest.json" not in self.files or "manifest.jws" not in self.files:
            self.v.fail("manifest: manifest.json or manifest.jws is missing")
            return None
        payload = self._verify_jws(self.files["manifest.jws"], "manifest.jws")
        if payload is None:
            return None
        try:
            statement = json.loads(payload)
            manifest: dict[str, Any] = json.loads(self.files["manifest.json"])
        except ValueError as exc:
            self.v.fail(f"manifest: not valid JSON ({exc})")
            return None
        if statement.get("manifest_sha256") != hashlib.sha256(self.files["manifest.json"]).hexdigest():
            self.v.fail("manifest: manifest.json does not hash to the SHA-256 signed in manifest.jws")
            return None
        if statement.get("bundle_id") != manifest.get("bundle_id"):
            self.v.fail("manifest: the signed bundle id differs from manifest.json")
            return None
        self.v.ok("manifest: signature verified, manifest.json matches the signed SHA-256")
        if self.external_jwks is None:
            # Anyone can sign a bundle with a key of their own and put it in jwks.json: the signatures then prove
            # only that the bundle agrees with itself.
            self.v.notes.append(
                "keys: the signatures were checked with the bundle's own jwks.json, not with the controller's "
                f"published keys. Fetch {str(manifest.get('jwks_url', 'the jwks_url of manifest.json'))[:200]} "
                "and verify again with --jwks <that file>: only then do they prove who signed."
            )
        return manifest

    def _file_hashes(self, manifest: dict[str, Any]) -> None:
        listed: dict[str, str] = manifest.get("files", {})
        bad = 0
        for name, digest in sorted(listed.items()):
            if name not in self.files:
                self.v.fail(f"file {name}: listed in the manifest but missing")
                bad += 1
            elif hashlib.sha256(self.files[name]).hexdigest() != digest:
                self.v.fail(f"file {name}: SHA-256 differs from the manifest")
                bad += 1
        for name in sorted(set(self.files) - set(listed) - SIGNED):
            self.v.fail(f"file {name}: present but not listed in the manifest")
            bad += 1
        if not bad:
            self.v.ok(f"files: {len(listed)} files match their SHA-256 in the manifest")

    def _checkpoint(self) -> dict[str, Any] | None:
        checkpoint = self._json("checkpoint.json")
        if checkpoint is None:
            return None
        payload = self._verify_jws(checkpoint.get("signature", ""), "checkpoint")
        if payload is None:
            return None
        expected = (
            checkpoint_payload(
                checkpoint.get("log_id", ""),
                checkpoint.get("tree_size", -1),
                checkpoint.get("root_hash", ""),
                _parse_time(checkpoint.get("timestamp", "")),
            )
            if checkpoint.get("timestamp")
            else b""
        )
        if payload != expected:
            self.v.fail("checkpoint: checkpoint.json differs from its signed payload")
            return None
        self.v.ok(f"checkpoint: tree size {checkpoint['tree_size']}, root {checkpoint['root_hash'][:16]}…, signed")
        result: dict[str, Any] = checkpoint
        return result

    def _chain(self) -> list[dict[str, Any]] | None:
        chain = self._json("chain.json")
        if chain is None:
            return None
        previous = GENESIS
        for expected_seq, link in enumerate(chain, start=1):
            if link.get("seq") != expected_seq:
                self.v.fail(f"chain: seq {expected_seq} missing (found {link.get('seq')})")
                return None
            if link.get("prev_hash") != previous:
                self.v.fail(f"chain: seq {expected_seq} does not link to seq {expected_seq - 1}")
                return None
            previous = link.get("hash")
        self.v.ok(f"chain: {len(chain)} links, unbroken from the first event")
        result: list[dict[str, Any]] = chain
        return result

    def _events(self, chain: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        events = self._json("events.json")
        if events is None:
            return None
        by_seq = {link["seq"]: link for link in chain or []}
        bad = 0
        for event in events:
            body = {k: v for k, v in event.items() if k not in ("hash", "log_position")}
            if hashlib.sha256(rfc8785.dumps(body)).hexdigest() != event.get("hash"):
                self.v.fail(f"event seq {event.get('seq')}: content does not hash to its hash")
                bad += 1
                continue
            link = by_seq.get(event.get("seq"))
            if chain is not None and (
                link is None or link["hash"] != event["hash"] or link["prev_hash"] != event.get("prev_hash")
            ):
                self.v.fail(f"event seq {event.get('seq')}: not in the chain at its seq")
                bad += 1
        if not bad:
            self.v.ok(f"events: {len(events)} events hash to their hashes (RFC 8785, SHA-256) and sit in the chain")
        result: list[dict[str, Any]] = events
        return result

    def _inclusion(self, events: list[dict[str, Any]], checkpoint: dict[str, Any]) -> None:
        proofs = self._json("proofs/inclusion.json")
        if proofs is None:
            return
        by_event = {p.get("event_id"): p for p in proofs.get("proofs", [])}
        root = bytes.fromhex(checkpoint["root_hash"])
        size = int(checkpoint["tree_size"])
        bad = 0
        for event in events:
            proof = by_event.get(event["id"])
            if proof is None:
                self.v.fail(f"event seq {event['seq']}: no inclusion proof")
                bad += 1
                continue
            try:
                path = [bytes.fromhex(node) for node in proof["path"]]
                leaf = merkle.leaf_hash(bytes.fromhex(event["hash"]))
                included = merkle.verify_inclusion(leaf, int(proof["log_position"]), size, path, root)
            except (ValueError, KeyError, TypeError):
                included = False
            if not included or proof.get("log_position") != event.get("log_position"):
                self.v.fail(f"event seq {event['seq']}: inclusion proof does not lead to the checkpoint root")
                bad += 1
        if not bad:
            self.v.ok(f"inclusion: {len(events)} events proven in the log of size {size}")

    def _texts(self, events: list[dict[str, Any]]) -> None:
        bad = 0
        for event in events:
            policy = event.get("policy", {})
            name = f"policies/{policy.get('document')}/{policy.get('version')}/{policy.get('lang')}.md"
            data = self.files.get(name)
            if data is None:
                self.v.fail(f"event seq {event['seq']}: cited text {name} is missing")
                bad += 1
            elif hashlib.sha256(data).hexdigest() != policy.get("sha256"):
                self.v.fail(f"event seq {event['seq']}: {name} does not hash to the policy.sha256 in the event")
                bad += 1
            snapshot = event.get("ui_snapshot")
            if snapshot:
                matches = [n for n in self.files if n.startswith(f"snapshots/{snapshot}.")]
                if not matches or hashlib.sha256(self.files[matches[0]]).hexdigest() != snapshot:
                    self.v.fail(f"event seq {event['seq']}: UI snapshot {snapshot[:16]}… missing or altered")
                    bad += 1
        if not bad:
            self.v.ok("texts: every cited policy text and UI snapshot hashes to the hash in its event")

    def _receipts(self, events: list[dict[str, Any]]) -> None:
        hashes = {e["id"]: e["hash"] for e in events}
        names = sorted(n for n in self.files if n.startswith("receipts/"))
        bad = 0
        for name in names:
            payload = self._verify_jws(self.files[name], name)
            if payload is None:
                bad += 1
                continue
            receipt = json.loads(payload)
            for service in receipt.get("services", []):
                for purpose in service.get("purposes", []):
                    event_id = purpose.get("x-eventId")
                    if event_id in hashes and hashes[event_id] != purpose.get("x-eventHash"):
                        self.v.fail(f"{name}: names event {event_id} with another hash")
                        bad += 1
        if not bad:
            self.v.ok(f"receipts: {len(names)} receipts signed and matching their events")


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def report(verdict: Verdict) -> str:
    lines = [("OK    " if ok else "FAIL  ") + message for ok, message in verdict.checks]
    lines += ["NOTE  " + note for note in verdict.notes]
    own_keys = " (with its own keys: see the NOTE)" if verdict.notes else ""
    lines.append(
        f"VERDICT: the bundle verifies{own_keys}."
        if verdict.passed
        else f"VERDICT: the bundle does NOT verify ({len(verdict.failures)} failure(s))."
    )
    return "\n".join(lines)
