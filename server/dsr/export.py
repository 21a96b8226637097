"""Access and portability (GDPR 15 and 20): everything held about a subject, as JSON and as CSV files.

Contact data, the current consents, every ledger event exactly as exported and hashed, the signed receipts, the
person's requests with their history, and who accessed their records. The person downloads it through a signed,
expiring link (itsdangerous, salt "dsr-export"); nothing is stored: the export is built at download time.
"""

from __future__ import annotations

import csv
import io
import zipfile
from datetime import UTC, datetime
from typing import Any

import orjson
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from server.accesslog import subject_access_log
from server.models import (
    ConsentEvent,
    ConsentState,
    DataSubjectRequest,
    DsrHistory,
    Receipt,
    Recipient,
    RecipientNotice,
    Subject,
)
from server.policies.controller import Controller
from server.policies.snapshot import CatalogSnapshot
from server.proof.events import exported_event

FORMATS = ("json", "csv")


class ExportLinkRefused(ValueError):
    """The link is malformed, tampered with or expired (`reason`: signature or expired)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ExportLinks:
    def __init__(self, secret: str, lifetime_s: int) -> None:
        self.serializer = URLSafeTimedSerializer(secret, salt="dsr-export")
        self.lifetime_s = lifetime_s

    def issue(self, request_id: int) -> str:
        return str(self.serializer.dumps({"r": request_id}))

    def verify(self, token: str) -> int:
        try:
            data = self.serializer.loads(token, max_age=self.lifetime_s)
        except SignatureExpired:
            raise ExportLinkRefused("expired") from None
        except BadSignature:
            raise ExportLinkRefused("signature") from None
        if not isinstance(data, dict) or not isinstance(data.get("r"), int):
            raise ExportLinkRefused("signature")
        return int(data["r"])


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value.isoformat() if hasattr(value, "isoformat") else value


async def subject_export(
    subject: Subject, catalog: CatalogSnapshot, controller: Controller, now: datetime
) -> dict[str, Any]:
    events = [
        exported_event(row, subject.pseudonym, catalog)
        for row in await ConsentEvent.filter(subject_id=subject.id).order_by("seq").values()
    ]
    consents = [
        {
            "purpose": row["purpose_id"],
            "channel": row["channel_id"],
            "status": row["status"],
            "since": _iso(row["since"]),
            "valid_until": _iso(row["valid_until"]),
            "policy_version": catalog.policies_by_id[row["policy_version_id"]].label,
        }
        for row in await ConsentState.filter(subject_id=subject.id)
        .order_by("purpose_id", "channel_id")
        .values("purpose_id", "channel_id", "status", "since", "valid_until", "policy_version_id")
    ]
    receipts = [
        {"id": str(r.id), "created_at": _iso(r.created_at), "event_ids": r.event_ids, "jws": r.jws}
        for r in await Receipt.filter(subject_id=subject.id).order_by("created_at")
    ]
    requests = []
    for row in await DataSubjectRequest.filter(subject_id=subject.id).order_by("received_at", "id").values():
        steps = await DsrHistory.filter(request_id=row["id"]).order_by("at", "id").values("at", "action", "note")
        requests.append(
            {
                "id": row["id"],
                "kind": row["kind"],
                "channel": row["channel"],
                "status": row["status"],
                "received_at": _iso(row["received_at"]),
                "due_on": _iso(row["due_on"]),
                "original_due_on": _iso(row["original_due_on"]),
                "extension_reason": row["extension_reason"],
                "details": row["details"],
                "outcome": row["outcome"],
                "closed_at": _iso(row["closed_at"]),
                "history": [{"at": _iso(s["at"]), "action": s["action"], "note": s["note"]} for s in steps],
            }
        )
    # GDPR 15(1)(c) and 19: the recipients of the data, and what each was told about this person.
    recipients = [
        {"name": r.name, "since": _iso(r.created_at), "until": _iso(r.disabled_at)}
        for r in await Recipient.all().order_by("name")
    ]
    notices = [
        {
            "recipient": n.recipient.name,
            "type": n.kind,
            "purpose": n.purpose_id,
            "channel": n.channel_id,
            "fields": n.field_names,
            "changed_at": _iso(n.changed_at),
            "status": n.status,
            "acknowledged_at": _iso(n.answered_at),
        }
        for n in await RecipientNotice.filter(subject_id=subject.id)
        .order_by("changed_at", "id")
        .prefetch_related("recipient")
    ]
    return {
        "generated_at": _iso(now),
        "controller": {"name": controller.name, "address": controller.address, "email": controller.email},
        "subject": {
            "ref": subject.ref,
            "pseudonym": subject.pseudonym,
            "email": subject.email,
            "phone": subject.phone,
            "locale": subject.locale,
            "created_at": _iso(subject.created_at),
            "restricted_at": _iso(subject.restricted_at),
        },
        "consents": consents,
        "events": events,
        "receipts": receipts,
        "requests": requests,
        "access_log": await subject_access_log(subject.id),
        "recipients": recipients,
        "recipient_notices": notices,
    }


def to_json(data: dict[str, Any]) -> bytes:
    return orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_UTC_Z)


def _csv(header: list[str], rows: list[list[Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")  # RFC 4180
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    return buffer.getvalue().encode("utf-8-sig")  # a BOM so spreadsheets read UTF-8


EVENT_COLUMNS = [
    "id",
    "seq",
    "recorded_at",
    "purpose",
    "channel",
    "action",
    "status",
    "policy",
    "touchpoint",
    "method",
    "actor_type",
    "actor_id",
    "ui_snapshot",
    "valid_until",
    "prev_hash",
    "hash",
]


def to_csv_zip(data: dict[str, Any]) -> bytes:
    """One RFC 4180 CSV file per table, in a zip (the same content as the JSON)."""
    files: dict[str, bytes] = {}
    files["contact.csv"] = _csv(["field", "value"], [[k, v] for k, v in data["subject"].items()])
    files["consents.csv"] = _csv(
        ["purpose", "channel", "status", "since", "valid_until", "policy_version"],
        [
            [c[k] for k in ("purpose", "channel", "status", "since", "valid_until", "policy_version")]
            for c in data["consents"]
        ],
    )
    files["events.csv"] = _csv(
        EVENT_COLUMNS,
        [
            [
                e["id"],
                e["seq"],
                e["recorded_at"],
                e["purpose"],
                e["channel"],
                e["action"],
                e["status"],
                "/".join(str(e["policy"][k]) for k in ("document", "version", "lang")),
                e["touchpoint"],
                e["method"],
                e["actor"]["type"],
                e["actor"]["id"],
                e["ui_snapshot"],
                e["valid_until"],
                e["prev_hash"],
                e["hash"],
            ]
            for e in data["events"]
        ],
    )
    files["receipts.csv"] = _csv(
        ["id", "created_at", "event_ids", "jws"],
        [[r["id"], r["created_at"], " ".join(r["event_ids"]), r["jws"]] for r in data["receipts"]],
    )
    request_keys = [
        "id",
        "kind",
        "channel",
        "status",
        "received_at",
        "due_on",
        "original_due_on",
        "extension_reason",
        "details",
        "outcome",
        "closed_at",
    ]
    files["requests.csv"] = _csv(request_keys, [[r[k] for k in request_keys] for r in data["requests"]])
    files["request_history.csv"] = _csv(
        ["request_id", "at", "action", "note"],
        [[r["id"], h["at"], h["action"], h["note"]] for r in data["requests"] for h in r["history"]],
    )
    files["access_log.csv"] = _csv(
        ["at", "actor_type", "actor_id", "action"],
        [[a["at"], a["actor"]["type"], a["actor"]["id"], a["action"]] for a in data["access_log"]],
    )
    files["recipients.csv"] = _csv(
        ["name", "since", "until"], [[r["name"], r["since"], r["until"]] for r in data["recipients"]]
    )
    notice_keys = ["recipient", "type", "purpose", "channel", "changed_at", "status", "acknowledged_at"]
    files["recipient_notices.csv"] = _csv(
        [*notice_keys, "fields"],
        [[*(n[k] for k in notice_keys), " ".join(n["fields"])] for n in data["recipient_notices"]],
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()
