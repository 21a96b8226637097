"""Trusted reverse proxies: the client, scheme and host a proxy names replace the socket's, for trusted peers only.

`FORWARDED_ALLOW_IPS` (uvicorn's name and syntax: IP addresses and CIDR networks, comma-separated, `*` for every
peer) lists the proxies whose headers are believed. When the socket peer is one of them, the ASGI scope's `client`,
`scheme`, `server` and `Host` header are rewritten from the RFC 7239 `Forwarded` header when the request has one
that names a hop, otherwise from `X-Forwarded-For`, `X-Forwarded-Proto` and `X-Forwarded-Host`. A proxy that sets
only `X-Forwarded-*` must therefore clear a client's `Forwarded` (docs/operations.md shows how with nginx).
Everything downstream reads the rewritten scope: the evidence IP and the rate-limit network (`request.client`),
https detection (HSTS, Secure cookies) and the same-origin checks (`request.url`).

The chain of addresses is walked from the right (the hop nearest to us) skipping trusted proxies; the first address
that is not a trusted proxy is the client. A client can prepend whatever it likes to these headers, but never gets
past the hop its own proxy appended. `for=unknown`, an obfuscated identifier (`_hidden`) or a malformed element is
an unknown client (`scope["client"] = None`), never the proxy's own address. With `*` every hop is trusted and the
leftmost one is taken, as uvicorn does: only for a proxy that overwrites these headers itself.

uvicorn's own `ProxyHeadersMiddleware` reads `X-Forwarded-For` and `-Proto` only (no `Forwarded`, no
`X-Forwarded-Host`), so the server runs uvicorn with `proxy_headers=False` and this middleware instead.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_TCHARS = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"  # RFC 9110 5.6.2
_PAIR = re.compile(rf'\s*({_TCHARS})=({_TCHARS}|"(?:[^"\\]|\\.)*")\s*', re.ASCII | re.DOTALL)
_PORT = re.compile(r"[0-9]{1,5}|_[A-Za-z0-9._-]+", re.ASCII)  # RFC 7239 6: port / obfport
_HOST = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?", re.ASCII)
SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}
DEFAULT_PORTS = {"http": 80, "https": 443}


class TrustedProxies:
    """The peers whose forwarded headers are believed: addresses and networks, or every peer (`*`)."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.everyone = False
        self.networks: list[IPNetwork] = []
        self._seen: dict[str | None, bool] = {}
        for entry in (e.strip() for e in entries):
            if entry == "*":
                self.everyone = True
            elif entry:
                self.networks.append(ipaddress.ip_network(entry, strict=False))  # ValueError for anything else

    def __bool__(self) -> bool:
        return self.everyone or bool(self.networks)

    def __contains__(self, host: str | None) -> bool:
        if self.everyone:
            return True
        known = self._seen.get(host)
        if known is None:
            known = self._seen[host] = self._trusted(host)
            if len(self._seen) > 4096:  # bounded: a client's addresses are looked up here too
                self._seen.clear()
        return known

    def _trusted(self, host: str | None) -> bool:
        address = _address(host)
        if address is None:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)


@dataclass(slots=True)
class Hop:
    """What one proxy said about the hop it received: the address it came from and, where given, the scheme and Host
    the client used. `client` is None for `unknown`, an obfuscated identifier or an unreadable value."""

    client: str | None
    port: int = 0
    proto: str | None = None
    host: str | None = None


def parse_node(value: str) -> tuple[str | None, int]:
    """(address, port) of an RFC 7239 node (`192.0.2.43:47011`, `[2001:db8::1]:4711`, `unknown`, `_hidden`), also
    as `X-Forwarded-For` writes them (a bare IPv6 address). The address is normalised; None when it is not one."""
    value = value.strip()
    port = ""
    if value.startswith("["):
        inner, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None, 0
        host, port = inner, rest[1:]
        if not isinstance(_address(host), ipaddress.IPv6Address):
            return None, 0
    elif value.count(":") == 1:
        host, port = value.split(":")
    else:
        host = value
    if port and not _PORT.fullmatch(port):
        return None, 0
    address = _address(host)
    if address is None:
        return None, 0
    return str(address), int(port) if port.isdigit() and int(port) <= 65535 else 0


def parse_forwarded(values: Iterable[str]) -> list[Hop]:
    """The hops of `Forwarded` headers (RFC 7239 4), leftmost first; several header lines make one list. An element
    that does not parse, or names a parameter twice, is a hop from an unknown client."""
    hops = []
    for element in (e for value in values for e in _split(value, ",")):
        if not element.strip():
            continue  # RFC 9110 5.6.1: empty list elements are ignored
        pairs = _pairs(element)
        if pairs is None:
            hops.append(Hop(None))
            continue
        client, port = parse_node(pairs["for"]) if "for" in pairs else (None, 0)
        hops.append(Hop(client, port, _scheme(pairs.get("proto")), _host(pairs.get("host"))))
    return hops


def parse_x_forwarded(forwarded_for: list[str], proto: list[str], host: list[str]) -> list[Hop]:
    """The hops of `X-Forwarded-For`, leftmost first. `X-Forwarded-Proto` and `-Host` name no hop: their last value,
    the one our nearest proxy wrote, is taken for the client the walk finds."""
    nodes = [part for value in forwarded_for for part in value.split(",") if part.strip()]
    last_proto = _scheme(_last(proto))
    last_host = _host(_last(host))
    return [Hop(*parse_node(node), last_proto, last_host) for node in nodes]


def client_hop(hops: list[Hop], trusted: TrustedProxies) -> Hop | None:
    """The hop that names the client: from the right, the first whose address is not a trusted proxy (the leftmost
    when every one is); None when there is no hop."""
    for hop in reversed(hops):
        if hop.client is None or hop.client not in trusted:
            return hop
    return hops[0] if hops else None


class ProxyHeadersMiddleware:
    """Rewrites the scope of a request whose socket peer is a trusted proxy (see the module's docstring)."""

    def __init__(self, app: ASGIApp, trusted: Iterable[str]) -> None:
        self.app = app
        self.trusted = TrustedProxies(trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.trusted and scope["type"] in ("http", "websocket"):
            peer = scope.get("client")
            if (peer is None and self.trusted.everyone) or (peer is not None and peer[0] in self.trusted):
                scope = forwarded_scope(scope, self.trusted)
        await self.app(scope, receive, send)


def forwarded_scope(scope: Scope, trusted: TrustedProxies) -> Scope:
    """`scope` as the client sent the request to the first trusted proxy (unchanged without forwarded headers)."""
    headers: dict[bytes, list[str]] = {}
    for name, value in scope["headers"]:
        if name in (b"forwarded", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"):
            headers.setdefault(name, []).append(value.decode("latin-1"))
    # An empty Forwarded (a client's, passed on) must not hide the X-Forwarded-For our proxy wrote.
    hops = parse_forwarded(headers.get(b"forwarded", []))
    if not hops:
        hops = parse_x_forwarded(
            headers.get(b"x-forwarded-for", []),
            headers.get(b"x-forwarded-proto", []),
            headers.get(b"x-forwarded-host", []),
        )
    hop = client_hop(hops, trusted)
    if hop is None:
        return scope
    scope = dict(scope)
    scope["client"] = (hop.client, hop.port) if hop.client is not None else None
    if hop.proto is not None:
        scope["scheme"] = hop.proto if scope["type"] == "http" else {"http": "ws", "https": "wss"}[hop.proto]
    if hop.host is not None:
        name, port = _host_port(hop.host)
        scope["server"] = (name, port or DEFAULT_PORTS[SCHEMES.get(scope["scheme"], "http")])
        scope["headers"] = [*((k, v) for k, v in scope["headers"] if k != b"host"), (b"host", hop.host.encode())]
    return scope


@functools.lru_cache(maxsize=4096)  # the same peers and visitors come back: parsing is most of this module's cost
def _address(host: str | None) -> IPAddress | None:
    if not host:
        return None
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _scheme(value: str | None) -> str | None:
    return SCHEMES.get(value.strip().lower()) if value else None


def _host(value: str | None) -> str | None:
    value = value.strip() if value else None
    return value.lower() if value and _HOST.fullmatch(value) else None


def _host_port(host: str) -> tuple[str, int | None]:
    """`example.com:8443` -> ("example.com", 8443); `[2001:db8::1]` -> ("2001:db8::1", None)."""
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        port = rest[1:]
    else:
        name, _, port = host.partition(":")
    return name, int(port) if port else None


def _last(values: list[str]) -> str | None:
    parts = [part for value in values for part in value.split(",") if part.strip()]
    return parts[-1] if parts else None


def _split(value: str, separator: str) -> list[str]:
    """`value` cut at `separator` outside quoted strings. A quote left open cuts at every separator instead: a
    client's stray `"` must not swallow the elements our proxies appended after it."""
    parts, start, quoted, escaped = [], 0, False, False
    for i, char in enumerate(value):
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append(value[start:i])
            start = i + 1
    parts.append(value[start:])
    return value.split(separator) if quoted else parts


def _pairs(element: str) -> dict[str, str] | None:
    """The parameters of one forwarded-element (`for=...;proto=...`), names lowered, values unquoted."""
    pairs: dict[str, str] = {}
    for part in _split(element, ";"):
        if not part.strip():
            continue
        match = _PAIR.fullmatch(part)
        if match is None:
            return None
        name, value = match.group(1).lower(), match.group(2)
        if name in pairs:
            return None  # RFC 7239 4: a parameter MUST NOT occur more than once per element
        pairs[name] = re.sub(r"\\(.)", r"\1", value[1:-1]) if value.startswith('"') else value
    return pairs
