"""`python -m server staff ...` (server/staff/cli.py, server/dsr/cli.py): a local account that can sign in at once,
and the reminder list of requests due soon or overdue."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from email import message_from_bytes
from typing import Any

import pytest
from starlette.testclient import TestClient

from server.app import create_app
from server.cli import main as cli_main
from server.settings import Settings
from tests.helpers.clock import Clock
from tests.helpers.console import PASSWORD, desk, sign_in


def main(argv: list[str]) -> int:
    """`python -m server staff <argv...>`."""
    return cli_main(["staff", *argv])


def test_staff_create_makes_an_account_that_signs_in_at_once(
    cli_env: Settings, clock: Clock, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert (
        main(["create", "--email", "Eve@Staff.example", "--name", "Eve", "--role", "supervisor", "--password-stdin"])
        == 0
    )
    created = json.loads(capsys.readouterr().out)
    assert created["email"] == "eve@staff.example" and created["role"] == "supervisor" and "password" not in created

    assert main(["create", "--email", "gen@staff.example", "--name", "Gen", "--role", "agent"]) == 0
    generated = json.loads(capsys.readouterr().out)["password"]
    assert len(generated) >= 16

    assert main(["create", "--email", "eve@staff.example", "--name", "Eve", "--role", "agent"]) == 2
    assert "already exists" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["create", "--email", "x@staff.example", "--name", "X", "--role", "root"])
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["create", "--email", "s@staff.example", "--name", "S", "--role", "agent", "--password-stdin"]) == 2

    assert main(["list"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [a["email"] for a in listed] == ["eve@staff.example", "gen@staff.example"]

    with TestClient(create_app(cli_env, clock=clock)) as client:
        csrf = sign_in(client, email="eve@staff.example")
        assert csrf and "Eve (supervisor)" in client.get("/console").text


def test_reminders_list_and_send(cli_env: Settings, clock: Clock, capsys: pytest.CaptureFixture[str]) -> None:
    with TestClient(create_app(cli_env, clock=clock)) as client:
        sign_in(client, "supervisor")
        service = desk(client)
        today = service.today()

        async def prepare() -> list[int]:
            late = await service.requests.open_request(
                "cust-cli", "access", "agent", received=today - timedelta(days=35)
            )
            fresh = await service.requests.open_request("cust-cli", "rectification", "agent")
            return [late.id, fresh.id]

        late_id, fresh_id = client.portal.call(prepare)  # type: ignore[union-attr]
    assert main(["reminders"]) == 0
    lines: list[dict[str, Any]] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["request"] for line in lines] == [late_id]
    assert lines[0]["overdue"] is True and lines[0]["recipients"], "unowned: every supervisor is reminded"
    assert main(["reminders", "--send"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["request"] == late_id
    mails = list((cli_env.mail_dir).glob("*.eml"))
    assert len(mails) == 1
    body = message_from_bytes(mails[0].read_bytes()).get_payload(decode=True)
    assert isinstance(body, bytes) and f"/console/requests/{late_id}" in body.decode()
    assert main(["reminders", "--send"]) == 0
    assert capsys.readouterr().out == "", "once a day"
    assert fresh_id not in [line["request"] for line in lines]
