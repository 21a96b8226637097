"""Published policy versions: the list, and each exact text with its hash (public)."""

from __future__ import annotations

import base64

import orjson
from starlette.requests import Request
from starlette.responses import Response

from server.db import column_length
from server.errors import NotFound
from server.kernel.params import iso
from server.models import PolicyVersion


def policy_url(document: str, version: str, lang: str) -> str:
    return f"/policies/{document}/{version}/{lang}"


async def list_policies(request: Request) -> Response:
    """Every published version with its SHA-256 and permanent URL."""
    rows = await PolicyVersion.all().order_by("document", "effective_at", "lang")
    data = [
        {
            "document": r.document,
            "version": r.version,
            "lang": r.lang,
            "title": r.title,
            "sha256": r.sha256,
            "effective_at": iso(r.effective_at),
            "material": r.material,
            "purposes": list(r.purposes),
            "summary": r.summary,
            "url": policy_url(r.document, r.version, r.lang),
        }
        for r in rows
    ]
    return Response(orjson.dumps(data), media_type="application/json", headers={"Cache-Control": "public, max-age=60"})


# The longest document, version and lang a published version can have (the columns' lengths).
_LENGTHS = {name: column_length(PolicyVersion, name) for name in ("document", "version", "lang")}


async def policy_text(request: Request) -> Response:
    """The exact published bytes (Markdown); `Repr-Digest` and `X-Content-SHA256` carry their SHA-256."""
    p = request.path_params
    row = None
    if all(len(p[name]) <= _LENGTHS[name] for name in _LENGTHS):  # longer was never published (and the ORM refuses it)
        row = await PolicyVersion.get_or_none(document=p["document"], version=p["version"], lang=p["lang"])
    if row is None:
        raise NotFound("no published policy version at this address")
    digest = base64.b64encode(bytes.fromhex(row.sha256)).decode()
    headers = {
        "X-Content-SHA256": row.sha256,
        "Repr-Digest": f"sha-256=:{digest}:",
        "ETag": f'"{row.sha256}"',
        "Content-Language": row.lang,
        # Published versions never change: cache them for a year.
        "Cache-Control": "public, max-age=31536000, immutable",
    }
    if "application/json" in request.headers.get("accept", ""):
        body = {
            "document": row.document,
            "version": row.version,
            "lang": row.lang,
            "sha256": row.sha256,
            "effective_at": iso(row.effective_at),
            "content": row.content,
        }
        return Response(orjson.dumps(body), media_type="application/json", headers=headers)
    return Response(row.content.encode("utf-8"), media_type="text/markdown; charset=utf-8", headers=headers)
