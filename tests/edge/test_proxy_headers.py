"""`server.middleware.proxy`: which client, scheme and host a request has, by what the socket peer is and what the
forwarded headers say. One table: each row a peer, the headers as a proxy chain would send them, and the scope the
app then sees."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.types import Message, Scope

from server.middleware.proxy import (
    ProxyHeadersMiddleware,
    TrustedProxies,
    forwarded_scope,
    parse_forwarded,
    parse_node,
)

PROXY = "10.0.0.5"
TRUSTED = ["10.0.0.0/24", "2001:db8:cafe::/48"]


def _scope(peer: str | None, *headers: tuple[str, str], host: str = "service.internal:8000") -> Scope:
    return {
        "type": "http",
        "scheme": "http",
        "method": "GET",
        "path": "/",
        "client": (peer, 40000) if peer is not None else None,
        "server": ("service.internal", 8000),
        "headers": [(b"host", host.encode()), *((k.lower().encode(), v.encode("latin-1")) for k, v in headers)],
    }


def _seen(scope: Scope, trusted: list[str]) -> Scope:
    """The scope the app behind the middleware receives."""
    seen: dict[str, Any] = {}

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        seen.update(scope)

    async def receive() -> Message:
        return {"type": "http.request"}

    async def send(message: Message) -> None:
        pass

    asyncio.run(ProxyHeadersMiddleware(app, trusted)(scope, receive, send))
    return seen


def _host(scope: Scope) -> str:
    return dict(scope["headers"])[b"host"].decode()


# (peer, headers, client the app sees, scheme, Host header)
CASES: list[tuple[str, str | None, list[tuple[str, str]], tuple[str, int] | None, str, str]] = [
    ("an untrusted peer's headers are ignored", "198.51.100.9",
     [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https"), ("Forwarded", "for=203.0.113.8")],
     ("198.51.100.9", 40000), "http", "service.internal:8000"),
    ("trusted peer without forwarded headers: unchanged", PROXY, [],
     (PROXY, 40000), "http", "service.internal:8000"),
    ("X-Forwarded-For/-Proto/-Host from one proxy", PROXY,
     [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "consent.example")],
     ("203.0.113.7", 0), "https", "consent.example"),
    ("a client's prepended X-Forwarded-For is skipped", PROXY,
     [("X-Forwarded-For", "1.2.3.4, 203.0.113.7")],
     ("203.0.113.7", 0), "http", "service.internal:8000"),
    ("trusted hops are skipped from the right", PROXY,
     [("X-Forwarded-For", "1.2.3.4, 203.0.113.7, 10.0.0.9, 10.0.0.8")],
     ("203.0.113.7", 0), "http", "service.internal:8000"),
    ("several X-Forwarded-For lines make one list", PROXY,
     [("X-Forwarded-For", "1.2.3.4"), ("X-Forwarded-For", "203.0.113.7")],
     ("203.0.113.7", 0), "http", "service.internal:8000"),
    ("X-Forwarded-For with a port and a bare IPv6 address", PROXY,
     [("X-Forwarded-For", "2001:db8::1, 203.0.113.7:5555")],
     ("203.0.113.7", 5555), "http", "service.internal:8000"),
    ("the last X-Forwarded-Proto is our proxy's", PROXY,
     [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "http, https")],
     ("203.0.113.7", 0), "https", "service.internal:8000"),
    ("every hop trusted: the leftmost", PROXY,
     [("X-Forwarded-For", "10.0.0.7, 10.0.0.8")],
     ("10.0.0.7", 0), "http", "service.internal:8000"),
    ("an unreadable X-Forwarded-For hop is an unknown client, not the proxy", PROXY,
     [("X-Forwarded-For", "203.0.113.7, not-an-ip")],
     None, "http", "service.internal:8000"),
    ("a bad scheme or host is ignored", PROXY,
     [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "gopher"), ("X-Forwarded-Host", "a b/c")],
     ("203.0.113.7", 0), "http", "service.internal:8000"),
    ("Forwarded, one element", PROXY,
     [("Forwarded", 'for=203.0.113.7;proto=https;host="consent.example:8443"')],
     ("203.0.113.7", 0), "https", "consent.example:8443"),
    ("Forwarded is preferred to X-Forwarded-*", PROXY,
     [("X-Forwarded-For", "198.51.100.1"), ("Forwarded", "for=203.0.113.7;proto=https")],
     ("203.0.113.7", 0), "https", "service.internal:8000"),
    ("an empty Forwarded does not hide X-Forwarded-For", PROXY,
     [("Forwarded", " , "), ("X-Forwarded-For", "203.0.113.7")],
     ("203.0.113.7", 0), "http", "service.internal:8000"),
    ("Forwarded: quoted IPv6 with a port", PROXY,
     [("Forwarded", 'For="[2001:db8::17]:4711";Proto=HTTPS')],
     ("2001:db8::17", 4711), "https", "service.internal:8000"),
    ("Forwarded: quoted IPv4 with a port", PROXY,
     [("Forwarded", 'for="203.0.113.43:47011"')],
     ("203.0.113.43", 47011), "http", "service.internal:8000"),
    ("Forwarded: hops, trusted ones skipped, proto of the client's hop", PROXY,
     [("Forwarded", 'for=1.2.3.4;proto=http, for=203.0.113.7;proto=https;host=consent.example, '
                    'for="[2001:db8:cafe::2]";proto=http;host=internal')],
     ("203.0.113.7", 0), "https", "consent.example"),
    ("Forwarded: several header lines make one list", PROXY,
     [("Forwarded", "for=1.2.3.4"), ("Forwarded", "for=203.0.113.7")],
     ("203.0.113.7", 0), "http", "service.internal:8000"),
    ("Forwarded: commas and semicolons inside quotes", PROXY,
     [("Forwarded", 'for=203.0.113.7;host="a.example";ext="x, y; z"')],
     ("203.0.113.7", 0), "http", "a.example"),
    ("Forwarded: for=unknown is an unknown client", PROXY,
     [("Forwarded", "for=1.2.3.4, for=unknown;proto=https")],
     None, "https", "service.internal:8000"),
    ("Forwarded: an obfuscated node is an unknown client", PROXY,
     [("Forwarded", 'for=1.2.3.4, for="_hidden:_port"')],
     None, "http", "service.internal:8000"),
    ("Forwarded: an element without for is an unknown client", PROXY,
     [("Forwarded", "for=1.2.3.4, proto=https")],
     None, "https", "service.internal:8000"),
    ("Forwarded: a malformed element from the client does not hide our proxy's", PROXY,
     [("Forwarded", 'for=1.2.3.4;;garbage "x, for=203.0.113.7')],
     ("203.0.113.7", 0), "http", "service.internal:8000"),
    ("Forwarded: a parameter twice in our hop is unreadable", PROXY,
     [("Forwarded", "for=203.0.113.7;for=1.2.3.4")],
     None, "http", "service.internal:8000"),
    ("Forwarded: an unbracketed IPv6 with a port is not an address", PROXY,
     [("Forwarded", 'for="2001:db8::1:80:x"')],
     None, "http", "service.internal:8000"),
    ("a trusted IPv6 peer", "2001:db8:cafe::9",
     [("X-Forwarded-For", "203.0.113.7")],
     ("203.0.113.7", 0), "http", "service.internal:8000"),
    ("an IPv4-mapped peer in a trusted IPv4 network", "::ffff:10.0.0.5",
     [("X-Forwarded-For", "203.0.113.7")],
     ("203.0.113.7", 0), "http", "service.internal:8000"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("peer", "headers", "client", "scheme", "host"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_the_scope_the_app_sees(
    peer: str, headers: list[tuple[str, str]], client: tuple[str, int] | None, scheme: str, host: str
) -> None:
    seen = _seen(_scope(peer, *headers), TRUSTED)
    assert (seen["client"], seen["scheme"], _host(seen)) == (client, scheme, host)


def test_server_follows_the_forwarded_host_and_scheme() -> None:
    trusted = TrustedProxies(TRUSTED)
    headers = [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")]
    assert forwarded_scope(_scope(PROXY, *headers, ("X-Forwarded-Host", "consent.example")), trusted)["server"] == (
        "consent.example",
        443,
    )
    assert forwarded_scope(_scope(PROXY, ("Forwarded", 'host="[2001:db8::5]:8443";for=_x')), trusted)["server"] == (
        "2001:db8::5",
        8443,
    )


def test_no_trusted_proxy_changes_nothing() -> None:
    scope = _scope("127.0.0.1", ("X-Forwarded-For", "203.0.113.7"), ("Forwarded", "for=203.0.113.7;proto=https"))
    seen = _seen(scope, [])
    assert (seen["client"], seen["scheme"]) == (("127.0.0.1", 40000), "http")


def test_star_trusts_every_peer_and_takes_the_leftmost() -> None:
    seen = _seen(_scope("198.51.100.9", ("X-Forwarded-For", "203.0.113.7, 198.51.100.10")), ["*"])
    assert seen["client"] == ("203.0.113.7", 0)


def test_a_websocket_scheme_follows_the_proxy() -> None:
    headers = [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")]
    scope = {**_scope(PROXY, *headers), "type": "websocket", "scheme": "ws"}
    assert (_seen(scope, TRUSTED))["scheme"] == "wss"


@pytest.mark.parametrize(
    ("node", "parsed"),
    [
        ("192.0.2.60", ("192.0.2.60", 0)),
        ("192.0.2.60:8080", ("192.0.2.60", 8080)),
        ("[2001:DB8::1]", ("2001:db8::1", 0)),
        ("[2001:db8::1]:_port", ("2001:db8::1", 0)),
        ("[192.0.2.60]", (None, 0)),  # brackets hold IPv6 only
        ("[2001:db8::1", (None, 0)),
        ("[2001:db8::1]x", (None, 0)),
        ("192.0.2.60:99999", ("192.0.2.60", 0)),
        ("192.0.2.60:http", (None, 0)),
        ("unknown", (None, 0)),
        ("_secret", (None, 0)),
        ("", (None, 0)),
        ("example.com", (None, 0)),
    ],
)
def test_nodes(node: str, parsed: tuple[str | None, int]) -> None:
    assert parse_node(node) == parsed


def test_forwarded_pairs_are_case_insensitive_and_unquoted() -> None:
    (hop,) = parse_forwarded(['FOR="203.0.113.7";Host="Consent.Example";proto="https"'])
    assert (hop.client, hop.host, hop.proto) == ("203.0.113.7", "consent.example", "https")
    assert parse_forwarded([" , ,for=203.0.113.7,,"])[0].client == "203.0.113.7"  # empty elements are no hops


def test_trusted_proxies_refuse_what_is_not_an_address() -> None:
    with pytest.raises(ValueError, match="does not appear to be"):
        TrustedProxies(["10.0.0.0/8", "proxy.internal"])
    trusted = TrustedProxies(["127.0.0.1", " ::1 ", ""])
    assert "127.0.0.1" in trusted and "::1" in trusted and "127.0.0.2" not in trusted
    assert None not in trusted and "testclient" not in trusted and not TrustedProxies([])
