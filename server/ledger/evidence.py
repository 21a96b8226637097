"""Minimised evidence kept with each event (invariant 9, docs/design.md; GDPR 5(1)(c))."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from typing import Any


def pseudonym(secret: str, ref: str) -> str:
    """HMAC-SHA256 of the subject ref under the server secret: the only subject id the ledger carries."""
    return hmac.new(secret.encode(), ref.encode(), hashlib.sha256).hexdigest()


def truncate_ip(value: str | None) -> str | None:
    """Keep the network, drop the host: /24 for IPv4, /48 for IPv6. Unparseable input is dropped, not kept."""
    if not value:
        return None
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def minimise(evidence: dict[str, Any] | None) -> dict[str, Any]:
    """The evidence fields the ledger keeps, each minimised; anything else is dropped."""
    evidence = evidence or {}
    kept: dict[str, Any] = {}
    if ip := truncate_ip(evidence.get("ip")):
        kept["ip"] = ip
    if user_agent := evidence.get("user_agent"):
        kept["user_agent"] = str(user_agent)[:256]
    if origin := evidence.get("origin"):
        kept["origin"] = str(origin)[:256]
    if evidence.get("gpc") is not None:
        kept["gpc"] = bool(evidence["gpc"])
    for key in ("reference", "message_id"):
        if value := evidence.get(key):
            kept[key] = str(value)[:256]
    return kept
