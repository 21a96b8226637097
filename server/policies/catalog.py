"""In-memory view of purposes and published policy versions, reloaded from the database every few seconds.

Several app processes may run: the view is short-lived (`CATALOG_TTL`) and reloaded on a miss, so a version
published by `policies sync` in another process is seen within seconds, and at once by the first write citing it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime

from server.kernel.idempotency import outside_keyed_write
from server.models import Channel, PolicyVersion, Purpose
from server.policies.snapshot import CatalogSnapshot, PolicyInfo, PurposeInfo


class Catalog:
    """Single-flight: when the snapshot is stale, one background reload runs while requests keep the old snapshot;
    concurrent reloads at every TTL would set the check's p99 (bench/README.md, "Catalogue reload: single flight")."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._snapshot: CatalogSnapshot | None = None
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()
        self._refresh: asyncio.Task[CatalogSnapshot] | None = None

    async def get(self) -> CatalogSnapshot:
        snapshot = self._snapshot
        if snapshot is None:
            return await self.reload()
        if time.monotonic() - self._loaded_at > self.ttl_s and self._refresh is None:
            # Not in the caller's transaction, if it holds one (an Idempotency-Key write).
            self._refresh = asyncio.get_running_loop().create_task(
                self._background_reload(), context=outside_keyed_write()
            )
        return snapshot

    async def _background_reload(self) -> CatalogSnapshot:
        try:
            return await self.reload()
        except Exception:  # keep serving the previous snapshot; the next stale read retries
            logging.getLogger("server.catalog").exception("catalog reload failed")
            assert self._snapshot is not None
            return self._snapshot
        finally:
            self._refresh = None

    async def reload(self) -> CatalogSnapshot:
        """Load now (callers that must see a just-published version); concurrent calls share one load."""
        async with self._lock:
            return await self._load()

    async def _load(self) -> CatalogSnapshot:
        purposes = {
            p.code: PurposeInfo(
                code=p.code,
                legal_basis=p.legal_basis,
                channels=frozenset(p.channels),
                channel_basis=dict(p.channel_basis),
                validity_days=p.validity_days,
                double_opt_in=p.double_opt_in,
                marketing=p.marketing,
                banner_category=p.banner_category,
                third_parties=tuple(p.third_parties),
                titles=dict(p.titles),
                descriptions=dict(p.descriptions),
            )
            for p in await Purpose.all()
        }
        rows = (
            await PolicyVersion.all()
            .order_by("document", "effective_at", "lang")
            .only(
                "id",
                "document",
                "version",
                "lang",
                "sha256",
                "effective_at",
                "material",
                "purposes",
                "title",
                "published_at",
            )
        )
        policies = [
            PolicyInfo(
                id=r.id,
                document=r.document,
                version=r.version,
                lang=r.lang,
                sha256=r.sha256,
                effective_at=_utc(r.effective_at),
                material=r.material,
                purposes=tuple(r.purposes),
                title=r.title,
                published_at=_utc(r.published_at) if r.published_at else None,
            )
            for r in rows
        ]
        channels = frozenset(c for p in purposes.values() for c in p.channels)
        channels = channels | frozenset(c.code for c in await Channel.all())
        self._snapshot = CatalogSnapshot(
            purposes=purposes,
            channels=channels,
            policies={p.label: p for p in policies},
            policies_by_id={p.id: p for p in policies},
            materials=tuple(p for p in policies if p.material),
        )
        self._loaded_at = time.monotonic()
        return self._snapshot


def _utc(value: datetime) -> datetime:
    """The instant with the standard library's UTC: Tortoise gives its own `ZoneInfo` subclass, which would make
    unpickling a snapshot (in the stream worker processes) import the whole ORM."""
    return value.astimezone(UTC)
