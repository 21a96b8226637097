"""Two server processes on one database share the banner's budget: the count is in the database (or Redis), not in
a process, so a load balancer spreading a flood over them hands it no more than one budget."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.banner import CONSENT_ID, ORIGIN
from tests.helpers.processes import Server, server_env, start_server, wait_ready
from tests.ports import free_port


def _choice(base_url: str) -> dict[str, Any]:
    config = httpx.get(f"{base_url}/v1/banner/config", params={"site": "demo"}, timeout=10).json()
    return {
        "site": "demo",
        "consent_id": CONSENT_ID,
        "categories": [],
        "method": "reject_all",
        "policy_version": config["policy"]["fr"]["version"],
        "lang": "fr",
        "text_sha256": config["hash"]["fr"],
    }


def _post(server: Server, body: dict[str, Any]) -> int:
    response = httpx.post(f"{server.base_url}/v1/cookie-consents", json=body, headers={"Origin": ORIGIN}, timeout=10)
    return response.status_code


@pytest.mark.slow
@pytest.mark.parametrize("store", ["database", "redis"])
def test_two_processes_share_one_budget(database_url: str, tmp_path: Path, store: str) -> None:
    servers = []
    secret = secrets.token_hex(24)  # both processes', and no other run's
    try:
        for name in ("a", "b"):
            port = free_port()
            env = {**server_env(database_url, tmp_path, port), "BANNER_RATE_PER_CONSENT": "3"}
            if store == "redis":  # a fresh secret: this run's keys are its own in a Redis other runs share
                env |= {"REDIS_URL": "redis://127.0.0.1:6379/0", "SECRET_KEY": secret}
            servers.append(start_server(env, tmp_path, name))
        for server in servers:
            wait_ready(server.base_url, server.process, server.output)
        a, b = servers
        # Each process shows its own PUBLIC_URL in the banner text, so each gets the text hash of its own config.
        to_a, to_b = _choice(a.base_url), _choice(b.base_url)
        assert [_post(a, to_a), _post(a, to_a), _post(b, to_b)] == [200, 200, 200]
        assert [_post(b, to_b), _post(a, to_a)] == [429, 429], "the third was the budget's last, whichever process"
    finally:
        for server in servers:
            server.stop()
