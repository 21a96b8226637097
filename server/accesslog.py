"""The access log: every proof, export and history read by staff or an API client is itself recorded
(GDPR 5(2) accountability, 32), and a subject's entries go into that subject's proof bundle."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from server.models import AccessLog


async def log_access(
    *,
    at: datetime,
    actor_type: str,
    actor_id: str,
    action: str,
    subject_id: Any = None,
    detail: dict[str, Any] | None = None,
    using_db: BaseDBAsyncClient | None = None,
) -> None:
    """`using_db`: the transaction of the change the entry accounts for, so both are kept or neither."""
    await AccessLog.create(
        using_db=using_db,
        at=at,
        actor_type=actor_type,
        actor_id=actor_id[:128],
        action=action,
        subject_id=subject_id,
        detail=detail or {},
    )


async def subject_access_log(subject_id: Any) -> list[dict[str, Any]]:
    rows = (
        await AccessLog.filter(subject_id=subject_id)
        .order_by("at", "id")
        .values("at", "actor_type", "actor_id", "action", "detail")
    )
    return [
        {
            "at": row["at"].strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "actor": {"type": row["actor_type"], "id": row["actor_id"]},
            "action": row["action"],
            "detail": row["detail"],
        }
        for row in rows
    ]
