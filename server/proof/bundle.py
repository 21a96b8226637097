"""The proof bundle an auditor downloads: a zip that proves a subject's consent history without trusting us.

Layout (every file's SHA-256 is in manifest.json, which is signed as manifest.jws):
  manifest.json, manifest.jws     what is inside, for whom, which checkpoint; manifest.jws signs its SHA-256
  jwks.json                       the verification keys (also at /.well-known/jwks.json)
  chain.json                      seq, prev_hash, hash of EVERY event of the subject (the whole chain)
  events.json                     the events in scope, exactly as hashed, with their log positions
  checkpoint.json                 the signed checkpoint the inclusion proofs lead to
  proofs/inclusion.json           an RFC 9162 audit path per event in scope
  receipts/<id>.jws               the signed consent receipts of the events in scope
  policies/<doc>/<ver>/<lang>.md  the exact policy texts the events cite
  snapshots/<sha256>.html|.txt    the exact UI the person was shown
  state.json                      the consent matrix now, and at `to` when given
  access_log.json                 who has read or exported this subject's records
  recipients.json                 what each recipient was told about this subject, and its acknowledgement
  report.html                     the same, readable by a person: who, what, when, how, which text
  VERIFYING.md                    how to check all of it with standard tools
"""

from __future__ import annotations

import hashlib
import io
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import rfc8785
from jinja2 import Environment, FileSystemLoader, select_autoescape
from joserfc import jws

from server.accesslog import log_access, subject_access_log
from server.auth.keys import ALGORITHM, KeyStore
from server.consent.decide import SubjectFlags
from server.consent.matrix import decide_all
from server.errors import NotFound
from server.ledger.replay import replay
from server.models import ConsentEvent, LogEntry, PolicyVersion, Receipt, RecipientNotice, Subject, UISnapshot
from server.policies.catalog import Catalog
from server.policies.controller import Controller
from server.policies.snapshot import CatalogSnapshot
from server.proof.events import exported_event
from server.proof.log import SignedCheckpoint, TransparencyLog, checkpoint_time

MANIFEST_TYP = "consent-proof-manifest+json"
TEMPLATES = Path(__file__).resolve().parent / "templates"
# One environment per process: it caches the compiled report template, which costs more to compile than to render
# (bench/README.md, "Proof bundle: shared paths, the report template compiled once").
_REPORT_ENV = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))


@dataclass(frozen=True)
class Scope:
    purpose: str | None = None
    channel: str | None = None
    start: datetime | None = None
    end: datetime | None = None

    def covers(self, event: dict[str, Any]) -> bool:
        return (
            (self.purpose is None or event["purpose_id"] == self.purpose)
            and (self.channel is None or event["channel_id"] == self.channel)
            and (self.start is None or event["recorded_at"] >= self.start)
            and (self.end is None or event["recorded_at"] < self.end)  # [start, end), as the ledger export
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "purpose": self.purpose,
            "channel": self.channel,
            "from": checkpoint_time(self.start) if self.start else None,
            "to": checkpoint_time(self.end) if self.end else None,
        }


def _json(data: Any) -> bytes:
    return orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_UTC_Z)


@dataclass(frozen=True)
class BundleSources:
    """Where a bundle's parts come from, wired once by the composition root."""

    clock: Callable[[], datetime]
    log: TransparencyLog
    catalog: Catalog
    keys: KeyStore
    issuer: str
    controller: Controller


async def build_bundle(sources: BundleSources, ref: str, scope: Scope, actor: tuple[str, str]) -> tuple[str, bytes]:
    """Returns (bundle id, zip bytes). Logs the access first, so the bundle includes its own generation."""
    subject = await Subject.get_or_none(ref=ref)
    if subject is None:
        raise NotFound("no subject with this ref", parameter="ref")
    now = sources.clock()
    bundle_id = str(uuid.uuid4())
    await log_access(
        at=now,
        actor_type=actor[0],
        actor_id=actor[1],
        action="proof_bundle",
        subject_id=subject.id,
        detail={"bundle_id": bundle_id, "scope": scope.as_json()},
    )
    log = sources.log
    checkpoint = await log.checkpoint()
    catalog = await sources.catalog.reload()

    rows = await ConsentEvent.filter(subject_id=subject.id).order_by("seq").values()
    positions = {
        str(r["event_id"]): r["position"]
        for r in await LogEntry.filter(event_id__in=[r["id"] for r in rows]).values("event_id", "position")
    }
    in_scope = [r for r in rows if scope.covers(r)]
    paths = await log.inclusion([positions[str(r["id"])] for r in in_scope], checkpoint.tree_size)

    files: dict[str, bytes] = {}
    events = []
    for row in in_scope:
        position = positions[str(row["id"])]
        events.append({**exported_event(row, subject.pseudonym, catalog), "log_position": position})
    files["chain.json"] = _json([{"seq": r["seq"], "prev_hash": r["prev_hash"], "hash": r["hash"]} for r in rows])
    files["events.json"] = _json(events)
    files["checkpoint.json"] = _json(checkpoint.as_json())
    files["proofs/inclusion.json"] = _json(
        {
            "tree_size": checkpoint.tree_size,
            "root_hash": checkpoint.root_hash,
            "leaf_hash": "SHA-256(0x00 || bytes.fromhex(event.hash))",
            "proofs": [
                {
                    "event_id": e["id"],
                    "seq": e["seq"],
                    "log_position": e["log_position"],
                    "path": [node.hex() for node in paths[e["log_position"]]],
                }
                for e in events
            ],
        }
    )
    scoped_ids = {e["id"] for e in events}
    receipts = [
        r for r in await Receipt.filter(subject_id=subject.id).order_by("created_at") if scoped_ids & set(r.event_ids)
    ]
    for receipt in receipts:
        files[f"receipts/{receipt.id}.jws"] = receipt.jws.encode()
    for policy in await _cited_policies(events):
        files[f"policies/{policy.document}/{policy.version}/{policy.lang}.md"] = policy.content.encode("utf-8")
    snapshots = {e["ui_snapshot"] for e in events if e["ui_snapshot"]}
    for snap in await UISnapshot.filter(sha256__in=list(snapshots)):
        files[f"snapshots/{snap.sha256}.{_extension(snap.content_type)}"] = snap.content.encode("utf-8")
    files["state.json"] = _json(_state(catalog, subject, rows, now, scope))
    files["access_log.json"] = _json(await subject_access_log(subject.id))
    files["recipients.json"] = _json(await _recipient_notices(subject.id, scoped_ids))
    files["jwks.json"] = _json(sources.keys.jwks())
    files["VERIFYING.md"] = (TEMPLATES / "VERIFYING.md").read_bytes()
    files["report.html"] = _report(
        sources.controller, subject, events, catalog, checkpoint, scope, now, bundle_id, files
    ).encode()

    manifest = {
        "bundle_id": bundle_id,
        "generated_at": checkpoint_time(now),
        "controller": {
            "name": sources.controller.name,
            "address": sources.controller.address,
            "email": sources.controller.email,
        },
        "subject": {"pseudonym": subject.pseudonym, "jurisdiction": sources.controller.jurisdiction},
        "scope": scope.as_json(),
        "checkpoint": {"tree_size": checkpoint.tree_size, "root_hash": checkpoint.root_hash},
        "jwks_url": f"{sources.issuer}/.well-known/jwks.json",
        "kid": sources.keys.active.kid,
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())},
    }
    manifest_bytes = _json(manifest)
    key = sources.keys.active
    # The signature covers the manifest's digest (a manifest listing thousands of files stays signable).
    statement = rfc8785.dumps({"bundle_id": bundle_id, "manifest_sha256": hashlib.sha256(manifest_bytes).hexdigest()})
    signature = jws.serialize_compact(
        {"alg": ALGORITHM, "kid": key.kid, "typ": MANIFEST_TYP}, statement, key, algorithms=[ALGORITHM]
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", manifest_bytes)
        archive.writestr("manifest.jws", signature)
        for name, data in sorted(files.items()):
            archive.writestr(name, data)
    return bundle_id, buffer.getvalue()


async def _recipient_notices(subject_id: Any, scoped_ids: set[str]) -> list[dict[str, Any]]:
    """GDPR 19: what each recipient was told and when it acknowledged (a withdrawal or objection only when its
    event is in the bundle's scope; erasures, restrictions and rectifications always)."""
    notices = []
    for n in (
        await RecipientNotice.filter(subject_id=subject_id).order_by("changed_at", "id").prefetch_related("recipient")
    ):
        if n.event_id is not None and str(n.event_id) not in scoped_ids:
            continue
        notices.append(
            {
                "notice_id": str(n.id),
                "recipient": {"name": n.recipient.name, "url": n.recipient.url},
                "type": n.kind,
                "event_id": str(n.event_id) if n.event_id else None,
                "purpose": n.purpose_id,
                "channel": n.channel_id,
                "fields": n.field_names,
                "changed_at": checkpoint_time(n.changed_at),
                "status": n.status,
                "attempts": n.attempts,
                "acknowledged_at": checkpoint_time(n.answered_at) if n.answered_at else None,
                "acknowledgement": (
                    {"http_status": n.answer_status, "body_sha256": n.answer_sha256} if n.answered_at else None
                ),
                "last_error": n.last_error,
            }
        )
    return notices


async def _cited_policies(events: list[dict[str, Any]]) -> list[PolicyVersion]:
    cited = {(e["policy"]["document"], e["policy"]["version"], e["policy"]["lang"]) for e in events}
    found = []
    for document, version, lang in sorted(cited):
        row = await PolicyVersion.get_or_none(document=document, version=version, lang=lang)
        if row is not None:
            found.append(row)
    return found


def _extension(content_type: str) -> str:
    return "html" if "html" in content_type else "txt"


def _state(
    catalog: CatalogSnapshot, subject: Subject, rows: list[dict[str, Any]], now: datetime, scope: Scope
) -> dict[str, Any]:
    flags = SubjectFlags(subject.erased_at, subject.restricted_at)

    def matrix(at: datetime, *, events_before: bool = False) -> list[dict[str, Any]]:
        # `events_before`: only the events recorded before `at`, as the bundle's [from, to) has them
        states = replay([r for r in rows if r["recorded_at"] < at] if events_before else rows, at)
        cells = decide_all(catalog, flags, states, at, purpose=scope.purpose or None, channel=scope.channel or None)
        return [cell.as_json() for cell in cells]

    state: dict[str, Any] = {"now": {"at": now, "consents": matrix(now)}}
    if scope.end is not None:
        # The state the bundle's events lead to: those recorded before `to` (an event at `to` is outside the range)
        state["as_of"] = {"at": scope.end, "consents": matrix(scope.end, events_before=True)}
    return state


def _report(
    controller: Controller,
    subject: Subject,
    events: list[dict[str, Any]],
    catalog: CatalogSnapshot,
    checkpoint: SignedCheckpoint,
    scope: Scope,
    now: datetime,
    bundle_id: str,
    files: dict[str, bytes],
) -> str:
    titles = {code: p.titles.get("en") or p.titles.get("fr") or code for code, p in catalog.purposes.items()}
    return _REPORT_ENV.get_template("report.html").render(
        controller=controller,
        pseudonym=subject.pseudonym,
        events=events,
        titles=titles,
        checkpoint=checkpoint,
        scope=scope.as_json(),
        generated_at=checkpoint_time(now),
        bundle_id=bundle_id,
        state=orjson.loads(files["state.json"]),
        access_log=orjson.loads(files["access_log.json"]),
        snapshots={name.split("/")[1].split(".")[0]: name for name in files if name.startswith("snapshots/")},
    )
