"""Role x route matrix (GDPR 25 and 32, least privilege): every console route and every API endpoint, tried with
no session and with a session of each role; each answer is the expected allow or deny.

Deny means: no session -> 303 to the sign-in page; a role without the route's permission -> 403 with
`X-Desk-Denied: role`; the customer-facing link routes refuse a staff session (they need their signed link); the
`/v1` API refuses staff cookies (it needs an OAuth access token). Allow means anything else: the handler ran (it
may still say 4xx about the empty form or the object, which later tests cover).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from starlette.testclient import TestClient

from server.app import ENDPOINTS
from server.console.routes import DESK_ENDPOINTS
from server.dsr import requests as dsr
from server.kernel.endpoints import LINK_TOKEN, PUBLIC, is_oauth
from server.models import ConsentEvent
from server.staff.roles import PERMISSIONS, ROLES, can, may_handle, may_take
from tests.helpers.app import run
from tests.helpers.console import desk, new_staff, record_api, sign_in

NONE: frozenset[str] = frozenset()
STAFF = frozenset(ROLES)
FRONT = frozenset({"agent", "supervisor"})
SUPERVISOR = frozenset({"supervisor"})
ADMIN = frozenset({"admin"})
READ_PROOF = frozenset({"supervisor", "auditor", "admin"})
AUDIT = frozenset({"auditor", "admin"})
EVERYONE = frozenset({None, *ROLES})  # public routes: the sign-in pages and the style sheet

# The table: who may reach each desk route. Written out by hand, not derived from the code under test.
EXPECTED: dict[tuple[str, str], frozenset[Any]] = {
    ("GET", "/console/login"): EVERYONE,
    ("POST", "/console/login"): EVERYONE,
    ("GET", "/console/auth/oidc"): EVERYONE,
    ("GET", "/console/auth/callback"): EVERYONE,
    ("GET", "/console/static/{name}"): EVERYONE,
    ("GET", "/console"): STAFF,
    ("GET", "/console/search"): STAFF,
    ("GET", "/console/customers/{ref}"): STAFF,
    ("GET", "/console/customers/{ref}/snapshots/{sha256}"): STAFF,
    ("GET", "/console/customers/{ref}/script"): FRONT,
    ("POST", "/console/customers/{ref}/record"): FRONT,
    ("POST", "/console/customers/{ref}/link"): FRONT,
    ("POST", "/console/customers/{ref}/requests"): FRONT,
    ("GET", "/console/customers/{ref}/proof"): READ_PROOF,
    ("POST", "/console/customers/{ref}/notices/{id}/resend"): FRONT,
    ("GET", "/console/requests"): STAFF,
    ("GET", "/console/requests/{id}"): STAFF,
    ("POST", "/console/requests/{id}/take"): FRONT,
    ("POST", "/console/requests/{id}/status"): FRONT,
    ("POST", "/console/requests/{id}/fulfil"): FRONT,
    ("POST", "/console/requests/{id}/assign"): SUPERVISOR,
    ("POST", "/console/requests/{id}/extend"): SUPERVISOR,
    ("POST", "/console/requests/{id}/restriction-notice"): SUPERVISOR,
    ("POST", "/console/requests/{id}/restriction-lift"): SUPERVISOR,
    ("GET", "/console/breaches"): READ_PROOF,
    ("POST", "/console/breaches"): SUPERVISOR,
    ("GET", "/console/breaches/export"): READ_PROOF,
    ("GET", "/console/breaches/{id}"): READ_PROOF,
    ("POST", "/console/breaches/{id}"): SUPERVISOR,
    ("POST", "/console/breaches/{id}/notified"): SUPERVISOR,
    ("POST", "/console/breaches/{id}/told"): SUPERVISOR,
    ("POST", "/console/breaches/{id}/note"): SUPERVISOR,
    ("POST", "/console/breaches/{id}/close"): SUPERVISOR,
    ("POST", "/console/breaches/{id}/reopen"): SUPERVISOR,
    ("GET", "/console/breaches/{id}/notification"): READ_PROOF,
    ("GET", "/console/record"): READ_PROOF,
    ("GET", "/console/answers"): STAFF,
    ("GET", "/console/answers/{id}"): STAFF,
    ("GET", "/console/audit"): AUDIT,
    ("GET", "/console/staff"): ADMIN,
    ("POST", "/console/staff"): ADMIN,
    ("POST", "/console/staff/{id}"): ADMIN,
    ("GET", "/console/ledger/export"): ADMIN,
    ("POST", "/console/logout"): STAFF,
    # customer-facing: a signed link, never a staff session
    ("GET", "/requests"): NONE,
    ("POST", "/requests"): NONE,
    ("GET", "/dsr/export/{token}"): NONE,
}
ROLES_TRIED: list[str | None] = [None, *ROLES]
# The rule each desk route declares, which the kernel enforces through the guard of its kind.
RULES: dict[tuple[str, str], str] = {(ep.method, ep.path): ep.auth for ep in DESK_ENDPOINTS}


def test_the_table_covers_every_desk_route_and_agrees_with_the_declared_rules() -> None:
    assert set(EXPECTED) == set(RULES) == {(ep.method, ep.path) for ep in DESK_ENDPOINTS}
    for key, rule in RULES.items():
        kind, _, permission = rule.partition(":")
        if kind == "staff":
            assert frozenset(PERMISSIONS[permission]) == EXPECTED[key], (key, rule)
        elif rule == PUBLIC:
            assert EXPECTED[key] == EVERYONE, key
        else:
            assert rule == LINK_TOKEN and EXPECTED[key] == NONE, key
    for endpoint in DESK_ENDPOINTS:  # no console route takes an OAuth token
        assert not is_oauth(endpoint.auth), endpoint.path


def test_least_privilege_in_the_permission_table() -> None:
    """The issue's rules, said plainly."""
    assert not any(can("auditor", p) for p in ("consent.record", "request.open", "request.handle", "link.send"))
    assert not can("agent", "ledger.export") and can("admin", "ledger.export")
    assert not can("agent", "request.sensitive") and can("supervisor", "request.sensitive")
    assert can("auditor", "audit.view") and can("auditor", "proof.download")
    assert not can("admin", "consent.record") and can("admin", "staff.manage")
    assert not can(None, "console")
    # object level: agents handle their own access, portability, rectification and objection requests only
    assert may_handle("agent", 7, "access", 7) and not may_handle("agent", 7, "access", 8)
    assert not may_handle("agent", 7, "erasure", 7) and not may_handle("agent", 7, "restriction", 7)
    assert may_handle("supervisor", 1, "erasure", None) and not may_handle("auditor", 1, "access", 1)
    assert may_take("agent", "access", None) and not may_take("agent", "erasure", None)
    assert not may_take("agent", "access", 3) and not may_take("auditor", "access", None)


def _fixtures(client: TestClient, auth: dict[str, str], agent_id: int) -> dict[str, str]:
    """Concrete values for the path parameters: a customer with an event and a snapshot, a request assigned to
    the agent, another staff account."""
    record_api(client, auth, "matrix-cust", [("offers", "email", "grant")])
    services_desk = desk(client)

    async def prepare() -> tuple[int, str]:
        request = await services_desk.requests.open_request(
            "matrix-cust", "access", "agent", actor=dsr.staff_actor(agent_id), owner_id=agent_id
        )
        event = await ConsentEvent.filter(subject__ref="matrix-cust").first()
        assert event is not None
        return request.id, str(event.ui_snapshot_sha256 or "0" * 64)

    request_id, sha = run(client, prepare)
    return {"ref": "matrix-cust", "id": str(request_id), "sha256": sha, "name": "console.css", "token": "x"}


def _url(path: str, values: dict[str, str], staff_id: str) -> str:
    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if path.startswith("/console/staff/"):
            return staff_id
        if path.startswith("/console/answers/"):
            return "unsubscribe"
        return values[name]

    return re.sub(r"\{([^}]+)\}", fill, path)


def _denied(response: Any, rule: str) -> bool:
    """Refused at the route: no session, a role without the permission, or (link routes) no valid link."""
    if response.status_code == 303 and response.headers.get("location", "").startswith("/console/login?next="):
        return True
    if rule == LINK_TOKEN:
        return bool(response.status_code >= 400)
    if response.status_code == 403:  # an object-level refusal (not your request) passed the route's guard
        return bool(response.headers.get("x-desk-denied") != "object")
    return bool(response.status_code == 401)


def test_role_route_matrix(client: TestClient, auth: dict[str, str]) -> None:
    agent = new_staff(client, "agent")
    values = _fixtures(client, auth, agent.id)
    target = new_staff(client, "agent")  # the account the admin's update route is tried on
    routes = sorted(EXPECTED, key=lambda key: key == ("POST", "/console/logout"))  # signing out comes last
    failures: list[str] = []
    for role in ROLES_TRIED:
        csrf = sign_in(client, email=agent.email) if role == "agent" else sign_in(client, role)
        for method, path in routes:
            url = _url(path, values, str(target.id))
            headers = {"X-CSRF-Token": csrf} if csrf else {}
            response = client.request(method, url, headers=headers, follow_redirects=False)
            allowed = role in EXPECTED[(method, path)]
            if allowed == _denied(response, RULES[(method, path)]):
                expected = "allow" if allowed else "deny"
                failures.append(f"{role or 'none'} {method} {path}: {response.status_code} (expected {expected})")
            elif not allowed and role is not None and path.startswith("/console"):
                assert response.headers.get("x-desk-denied") == "role", (role, method, path)
            if response.status_code >= 500:
                failures.append(f"{role or 'none'} {method} {path}: {response.status_code}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("role", ROLES)
def test_staff_cookies_never_open_the_api(client: TestClient, role: str) -> None:
    """The /v1 API needs an OAuth access token: a console session is refused on every scoped endpoint."""
    sign_in(client, role)
    session = client.cookies.get("desk_session")
    assert session
    for endpoint in ENDPOINTS:
        if not is_oauth(endpoint.auth):
            continue
        url = re.sub(r"\{[^}]+\}", "x", endpoint.path)
        response = client.request(endpoint.method, url, headers={"Cookie": f"desk_session={session}"})
        assert response.status_code == 401, (role, endpoint.method, endpoint.path, response.status_code)
