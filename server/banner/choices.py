"""A banner choice recorded once, however often the banner sends it.

The banner keeps a choice the server has not acknowledged and sends it again (after a 429, a 503, a lost network,
at the next page load) with the same `choice_id`. The first sending claims the key `SHA-256(consent_id, choice_id)`
in `banner_choices` and records the choice in the same transaction (the ledger's transaction nests in it as a
savepoint), so either both are committed or neither is. A later sending of the same content finds the claim and
gets the first answer again, rebuilt from the stored receipt and its events, and writes nothing; the same choice id
with other content is refused (409 `/problems/choice-id-reused`). Two sendings at once: the second's INSERT waits
for the first's row (PostgreSQL) or for the write lock (SQLite), then finds it.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from server.banner.config import DOCUMENT
from server.banner.errors import ChoiceIdReused
from server.banner.record import Evidence, Recorded, record_choice
from server.banner.schemas import CookieConsentIn
from server.banner.sites import Site
from server.db import placeholders
from server.models import ConsentEvent, Receipt

if TYPE_CHECKING:
    from server.banner.config import SiteConfig
    from server.banner.service import BannerService
    from server.services import Services

TABLE = "banner_choices"


@dataclass(frozen=True)
class Answer:
    """The events and receipt a choice's record answers with, first time or again."""

    policy: str
    snapshot: str
    touchpoint: str
    events: list[dict[str, str]]
    receipt: str


def table_sql() -> list[str]:
    """The claims' table (migration 0017): kept as long as the receipt it points to, one row per choice."""
    return [
        f"CREATE TABLE IF NOT EXISTS {TABLE} (key CHAR(64) NOT NULL PRIMARY KEY, content_sha256 CHAR(64) NOT NULL, "
        "receipt_id VARCHAR(36), created_at BIGINT NOT NULL)"
    ]


async def record_once(
    services: Services,
    banner: BannerService,
    site: Site,
    config: SiteConfig,
    choice: CookieConsentIn,
    evidence: Evidence,
) -> Answer:
    if choice.choice_id is None:  # a banner built before choice ids: recorded each time it is sent
        return _answer(await record_choice(services, banner, site, config, choice, evidence))
    key = hashlib.sha256(f"{choice.consent_id}\0{choice.choice_id}".encode()).hexdigest()
    content = hashlib.sha256(
        orjson.dumps(choice.model_dump(exclude={"choice_id"}), option=orjson.OPT_SORT_KEYS)
    ).hexdigest()
    now = int(services.clock().timestamp())
    async with in_transaction() as conn:
        ph = placeholders(conn, 3)
        # RETURNING says whether this call inserted (Tortoise's row count of an INSERT on asyncpg is not one).
        claimed = await conn.execute_query_dict(
            f"INSERT INTO {TABLE} (key, content_sha256, created_at) VALUES ({ph[0]}, {ph[1]}, {ph[2]}) "
            "ON CONFLICT (key) DO NOTHING RETURNING key",
            [key, content, now],
        )
        if not claimed:
            return await _again(conn, choice, key, content)
        recorded = await record_choice(services, banner, site, config, choice, evidence)
        ph = placeholders(conn, 2)
        await conn.execute_query(
            f"UPDATE {TABLE} SET receipt_id = {ph[0]} WHERE key = {ph[1]}", [_receipt_id(recorded.receipt), key]
        )
    # The ledger woke the recipients' dispatcher before this commit, when its notices were not visible yet: again.
    if recorded.result.events and services.ledger.on_notices is not None:
        services.ledger.on_notices()
    return _answer(recorded)


async def _again(conn: BaseDBAsyncClient, choice: CookieConsentIn, key: str, content: str) -> Answer:
    rows = await conn.execute_query_dict(
        f"SELECT content_sha256, receipt_id FROM {TABLE} WHERE key = {placeholders(conn, 1)[0]}", [key]
    )
    if rows[0]["content_sha256"] != content:
        raise ChoiceIdReused(
            f"choice id {choice.choice_id!r} was recorded with other content; a new choice needs a new id",
            choice_id=choice.choice_id,
        )
    receipts = await Receipt.filter(id=rows[0]["receipt_id"]).using_db(conn).values("event_ids", "jws")
    ids = [str(i) for i in receipts[0]["event_ids"]]
    found = await (
        ConsentEvent.filter(id__in=ids)
        .using_db(conn)
        .values("id", "purpose_id", "channel_id", "action", "status", "hash")
    )
    by_id = {str(e["id"]): e for e in found}
    ordered = [by_id[i] for i in ids if i in by_id]
    return Answer(
        policy=f"{DOCUMENT}/{choice.policy_version}/{choice.lang}",
        snapshot=choice.text_sha256,
        touchpoint="gpc" if choice.method == "gpc" else "banner",
        events=[
            {
                "id": str(e["id"]),
                "purpose": str(e["purpose_id"]),
                "channel": str(e["channel_id"]),
                "action": str(e["action"]),
                "status": str(e["status"]),
                "hash": str(e["hash"]),
            }
            for e in ordered
        ],
        receipt=str(receipts[0]["jws"]),
    )


def _receipt_id(jws: str) -> str:
    """The receipt's id: its `jti` claim (server.proof.receipts), read from the JWS payload the ledger just signed."""
    payload = jws.split(".")[1]
    return str(orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["jti"])


def _answer(recorded: Recorded) -> Answer:
    return Answer(
        policy=recorded.policy,
        snapshot=recorded.snapshot,
        touchpoint=recorded.touchpoint,
        events=[
            {
                "id": e.id,
                "purpose": e.purpose,
                "channel": e.channel,
                "action": e.action,
                "status": e.status,
                "hash": e.hash,
            }
            for e in recorded.result.events
        ],
        receipt=recorded.receipt,
    )
