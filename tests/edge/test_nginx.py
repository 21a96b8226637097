"""The service behind a real nginx on loopback, as `docs/operations.md` ("Behind a reverse proxy") configures it.

A real server (`python -m server serve`, SQLite and PostgreSQL) trusts only 127.0.0.1, where nginx connects from.
Visitors are real sockets bound to 40 different loopback networks (127.0.N.1: Linux routes all of 127.0.0.0/8 to
this host), so each is a network of its own to nginx, which forwards the address with X-Forwarded-For or with an
RFC 7239 Forwarded header (both variants run). nginx also listens with TLS, and forwards the scheme.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.banner import record_over_http
from tests.helpers.nginx import VARIANTS, Nginx, Ports, start_nginx
from tests.helpers.processes import Server, access_token, new_client, server_env, start_server, wait_ready
from tests.ports import free_port

VISITORS = 40
HSTS = "max-age=31536000; includeSubDomains"


@dataclass
class Edge:
    service: Server
    nginx: Nginx
    ports: Ports
    origin: str  # PUBLIC_URL: nginx's plain listener, the demo site's origin
    token: str  # consent:read, to read the events back through the API

    def visitor(self, network: int, base_url: str | None = None) -> httpx.Client:
        """A client whose socket is bound to 127.0.`network`.1."""
        transport = httpx.HTTPTransport(local_address=f"127.0.{network}.1", verify=False)
        return httpx.Client(base_url=base_url or self.nginx.https_url, transport=transport, timeout=20)

    def events(self, consent_id: str) -> list[dict[str, Any]]:
        response = httpx.get(
            f"{self.service.base_url}/v1/subjects/{consent_id}/events",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        events: list[dict[str, Any]] = response.json()["events"]
        return events


@pytest.fixture(params=sorted(VARIANTS))
def edge(request: pytest.FixtureRequest, database_url: str, tmp_path: Path) -> Iterator[Edge]:
    ports = Ports(service=free_port(), http=free_port(), https=free_port(), redirect=free_port())
    origin = f"http://127.0.0.1:{ports.http}"
    env = {
        **server_env(database_url, tmp_path, ports.service),
        "PUBLIC_URL": origin,
        "FORWARDED_ALLOW_IPS": "127.0.0.1",
    }
    credentials = new_client(env, tmp_path, "consent:read", name="edge-test")
    service = start_server(env, tmp_path, "service")
    service.base_url = f"http://127.0.0.1:{ports.service}"
    nginx = None
    try:
        wait_ready(service.base_url, service.process, service.output)
        nginx = start_nginx(tmp_path / "nginx", ports, request.param)
        token = access_token(service.base_url, credentials["client_id"], credentials["client_secret"])
        yield Edge(service, nginx, ports, origin, token)
    finally:
        if nginx is not None:
            nginx.stop()
        service.stop()


def _networks(edge: Edge, consent_id: str) -> set[object]:
    events = edge.events(consent_id)
    assert events, consent_id
    return {event["evidence"].get("ip") for event in events}


def test_forty_visitors_on_forty_networks_are_all_recorded_with_their_own_address(edge: Edge) -> None:
    """Behind one proxy, every visitor is no longer the proxy: none is refused by the per-network limit, and each
    event keeps its visitor's network (/24), not 127.0.0.0/24."""
    recorded: dict[int, str] = {}
    for network in range(1, VISITORS + 1):
        with edge.visitor(network) as http:
            recorded[network] = record_over_http(http, edge.origin)
    for network, consent_id in recorded.items():
        assert _networks(edge, consent_id) == {f"127.0.{network}.0/24"}, (network, edge.nginx.output())


def test_what_a_client_prepends_is_not_believed(edge: Edge) -> None:
    """A visitor's own X-Forwarded-For and Forwarded headers, through nginx: nginx appends to the first (the service
    takes the address nginx added) and replaces or clears the second."""
    spoof = {"X-Forwarded-For": "198.51.100.7", "Forwarded": "for=198.51.100.8;proto=https"}
    with edge.visitor(41) as http:
        consent_id = record_over_http(http, edge.origin, **spoof)
    assert _networks(edge, consent_id) == {"127.0.41.0/24"}


def test_forwarded_headers_sent_straight_to_the_service_are_ignored(edge: Edge) -> None:
    """The service trusts 127.0.0.1 only: a peer on 127.0.42.1 that names another client is that peer."""
    spoof = {
        "X-Forwarded-For": "198.51.100.7",
        "X-Forwarded-Proto": "https",
        "Forwarded": "for=198.51.100.8;proto=https",
    }
    with edge.visitor(42, edge.service.base_url) as http:
        consent_id = record_over_http(http, edge.origin, **spoof)
        assert "strict-transport-security" not in http.get("/healthz", headers=spoof).headers
    assert _networks(edge, consent_id) == {"127.0.42.0/24"}


def test_https_at_nginx_gives_hsts_and_secure_cookies(edge: Edge) -> None:
    """PUBLIC_URL is plain http here, so only the forwarded scheme can make the service see https."""
    with edge.visitor(43) as https:
        page = https.get("/console/login")
        assert page.status_code == 200 and page.url.scheme == "https"
        assert page.headers.get("strict-transport-security") == HSTS
        cookie = page.headers["set-cookie"]
        assert cookie.startswith("desk_login=") and "secure" in cookie.lower(), cookie
        assert page.headers["cache-control"] == "no-store" and page.headers["x-content-type-options"] == "nosniff"
    with edge.visitor(43, edge.nginx.http_url) as plain:
        page = plain.get("/console/login")
        assert page.status_code == 200
        assert "strict-transport-security" not in page.headers
        assert "secure" not in page.headers["set-cookie"].lower(), page.headers["set-cookie"]


def test_the_documented_port_80_block_sends_visitors_to_https(edge: Edge) -> None:
    with edge.visitor(44, f"http://127.0.0.1:{edge.ports.redirect}") as http:
        answer = http.get("/preferences?token=x", follow_redirects=False)
    assert answer.status_code == 301
    assert answer.headers["location"] == "https://127.0.0.1/preferences?token=x"
