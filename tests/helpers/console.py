"""The console (the service desk) as staff use it: accounts, sign-in, forms with their CSRF token, requests opened
for a customer, and reads of the database in the app's event loop."""

from __future__ import annotations

import re
import secrets
from typing import Any

from starlette.testclient import TestClient

from server.console.desk import Desk
from server.models import Subject
from server.staff.accounts import create_staff
from tests.helpers.api import record
from tests.helpers.app import run

PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def new_staff(client: TestClient, role: str, email: str | None = None, name: str | None = None) -> Any:
    email = email or f"{role}-{secrets.token_hex(4)}@staff.example"
    return run(client, create_staff, email, name or role.title(), role, PASSWORD).account


def sign_in(client: TestClient, role: str | None = None, *, email: str | None = None) -> str | None:
    """Sign in (creating the account when `role` is given); returns the session's CSRF token."""
    client.cookies.clear()
    if role is not None and email is None:
        email = new_staff(client, role).email
    if email is None:
        return None
    page = client.get("/console/login")
    token = _CSRF.search(page.text)
    assert token, page.text
    answer = client.post(
        "/console/login",
        data={"email": email, "password": PASSWORD, "csrf": token.group(1), "next": "/console"},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    return csrf_of(client)


def csrf_of(client: TestClient) -> str:
    page = client.get("/console/answers")
    token = _CSRF.search(page.text)
    assert page.status_code == 200 and token, page.text[:500]
    return token.group(1)


def post(
    client: TestClient,
    csrf: str | None,
    path: str,
    data: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    sent = {"X-CSRF-Token": csrf} if csrf else {}
    return client.post(path, data=data or {}, headers={**sent, **(headers or {})}, follow_redirects=False)


def set_contact(client: TestClient, ref: str, **values: Any) -> None:
    async def work() -> None:
        await Subject.filter(ref=ref).update(**values)

    run(client, work)


def record_api(client: TestClient, headers: dict[str, str], ref: str, decisions: list[tuple[str, str, str]]) -> Any:
    answer = record(client, headers, ref, decisions, policy="privacy-policy/1/en")
    assert answer.status_code == 201, answer.text
    return answer.json()


def check(client: TestClient, headers: dict[str, str], ref: str, purpose: str, channel: str) -> dict[str, Any]:
    answer = client.get(
        "/v1/consents/check", params={"subject": ref, "purpose": purpose, "channel": channel}, headers=headers
    )
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def desk(client: TestClient) -> Desk:
    """The console's shared objects (`server.console.desk.Desk`)."""
    built: Desk = client.app.state.desk  # type: ignore[attr-defined]
    return built


def fetch(client: TestClient, model: Any, **filters: Any) -> Any:
    """`model.get(**filters)` in the app's event loop."""

    async def work() -> Any:
        return await model.get(**filters)

    return run(client, work)


def count(client: TestClient, model: Any, **filters: Any) -> int:
    async def work() -> int:
        return int(await model.filter(**filters).count())

    return int(run(client, work))


def open_via_console(client: TestClient, csrf: str | None, ref: str, kind: str, **form: str) -> int:
    answer = post(client, csrf, f"/console/customers/{ref}/requests", {"kind": kind, "assign_me": "1", **form})
    assert answer.status_code == 303, answer.text
    match = re.fullmatch(r"/console/requests/(\d+)", answer.headers["location"])
    assert match, answer.headers["location"]
    return int(match.group(1))
