"""The recipients the operator registers: add, list, disable (GDPR 19; also the list GDPR 15(1)(c) answers with)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from ipaddress import ip_address
from urllib.parse import urlsplit

import httpx
from tortoise.exceptions import IntegrityError

from server.errors import InvalidRequest
from server.models import Purpose, Recipient, RecipientNotice


@dataclass(frozen=True)
class RecipientView:
    id: int
    name: str
    url: str
    purposes: list[str]
    active: bool
    pending: int
    failed: int


def check_url(url: str, allow_plain_http: bool) -> str:
    """An absolute https URL; plain http only to a loopback host or when `allow_plain_http` (development)."""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 (raises ValueError on a port that is not a number or out of range)
        httpx.URL(url.strip())  # what the dispatcher will send to
    except (ValueError, httpx.InvalidURL) as exc:
        raise InvalidRequest(f"{url!r} is not a valid URL: {exc}", parameter="url") from exc
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise InvalidRequest(f"{url!r} is not an absolute http(s) URL", parameter="url")
    if parts.username or parts.password:
        raise InvalidRequest("put no credentials in the URL", parameter="url")
    if parts.scheme == "http" and not allow_plain_http and not _loopback(parts.hostname):
        raise InvalidRequest("a recipient's URL must use https (notices name people)", parameter="url")
    return url.strip()


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


async def add(
    name: str, url: str, now: datetime, *, purposes: Sequence[str] = (), allow_plain_http: bool = False
) -> Recipient:
    """`purposes`: the purposes whose withdrawals and objections it is told of (none given: every purpose)."""
    name = name.strip()
    if not name or len(name) > 128:
        raise InvalidRequest("a recipient needs a name of 1 to 128 characters", parameter="name")
    wanted = sorted({p.strip() for p in purposes if p.strip()})
    known = set(await Purpose.filter(code__in=wanted).values_list("code", flat=True)) if wanted else set()
    if unknown := [p for p in wanted if p not in known]:
        raise InvalidRequest(f"unknown purpose(s): {', '.join(unknown)}", parameter="purposes")
    try:
        return await Recipient.create(name=name, url=check_url(url, allow_plain_http), purposes=wanted, created_at=now)
    except IntegrityError as exc:
        raise InvalidRequest(f"a recipient named {name!r} already exists", parameter="name") from exc


async def disable(name: str, now: datetime) -> bool:
    """No new notices for it; those already queued are still sent (the data were disclosed before)."""
    return bool(await Recipient.filter(name=name, disabled_at=None).update(disabled_at=now))


async def listing() -> list[RecipientView]:
    views = []
    for recipient in await Recipient.all().order_by("name"):
        notices = RecipientNotice.filter(recipient_id=recipient.id)
        views.append(
            RecipientView(
                recipient.id,
                recipient.name,
                recipient.url,
                recipient.purposes,
                recipient.disabled_at is None,
                await notices.filter(status="pending").count(),
                await notices.filter(status="failed").count(),
            )
        )
    return views
