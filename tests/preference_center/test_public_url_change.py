"""Links mailed before a PUBLIC_URL change keep working after it, on both databases: they are signed for the
installation's stored identity (the transparency log's id), not for the URL of the process that mailed them.

The old host in the link is the operator's redirect to keep; here the client reaches the moved app directly."""

from __future__ import annotations

import email
import email.policy
import re
from email.message import EmailMessage
from pathlib import Path

from starlette.testclient import TestClient

from server.app import create_app
from server.auth.keys import signing_keys
from server.links.tokens import LinkTokens
from server.settings import Settings
from tests.helpers.api import bearer, record
from tests.helpers.clock import Clock

FIRST_URL = "http://testserver"
MOVED_URL = "https://consent.moved.example"
REF = "cust-moved"


def _mails(folder: Path) -> list[EmailMessage]:
    found = []
    for path in sorted(folder.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        found.append(message)
    return found


def _path_of_link(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    match = re.search(r"http://testserver(/\S+)", body.get_content())
    assert match, body.get_content()
    return match.group(1)


def _status(client: TestClient, auth: dict[str, str], purpose: str, channel: str) -> str:
    answer = client.get("/v1/consents/check", params={"subject": REF, "purpose": purpose, "channel": channel})
    assert answer.status_code == 401  # without a token: the check below is the real one
    answer = client.get(
        "/v1/consents/check", params={"subject": REF, "purpose": purpose, "channel": channel}, headers=auth
    )
    assert answer.status_code == 200, answer.text
    status: str = answer.json()["status"]
    return status


def _csrf(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, page
    return match.group(1)


def test_links_mailed_before_a_public_url_change_still_work_after_it(
    settings: Settings, clock: Clock, tmp_path: Path
) -> None:
    outbox = tmp_path / "mail"
    first = settings.with_overrides(public_url=FIRST_URL, mail_dir=outbox)
    with TestClient(create_app(first, clock=clock), raise_server_exceptions=False) as client:
        auth = bearer(client)
        preferences = client.post(
            f"/v1/subjects/{REF}/preference-links", json={"email": "ana@example.com", "locale": "en"}, headers=auth
        )
        assert preferences.status_code == 200, preferences.text
        preferences_path = preferences.json()["url"].removeprefix(FIRST_URL)
        granted = record(client, auth, REF, [("newsletter", "email", "grant")])
        assert granted.status_code == 201, granted.text
        assert granted.json()["confirmations"][0]["mail"] == "sent"
        (mail,) = _mails(outbox)
        confirm_path = _path_of_link(mail)
        assert confirm_path.startswith("/preferences/confirm?token=")
        unsubscribe = client.post(
            f"/v1/subjects/{REF}/unsubscribe-links", json={"purpose": "newsletter", "channel": "email"}, headers=auth
        )
        assert unsubscribe.status_code == 200, unsubscribe.text
        unsubscribe_path = unsubscribe.json()["url"].removeprefix(FIRST_URL)
        assert unsubscribe_path.startswith("/unsubscribe/")

    # Another installation, with its own keys, signing for the very same issuer.
    stranger_keys = signing_keys(settings.with_overrides(signing_keys_dir=tmp_path / "other-keys"))
    forged, _ = LinkTokens(stranger_keys, FIRST_URL, 3600).issue(
        REF, "unsubscribe", purpose="newsletter", channel="email"
    )

    moved = settings.with_overrides(public_url=MOVED_URL, mail_dir=outbox)
    with TestClient(create_app(moved, clock=clock), raise_server_exceptions=False) as client:
        auth = bearer(client)
        assert client.get(f"/unsubscribe/{forged}").status_code == 403
        refused = client.post(f"/unsubscribe/{forged}", data={"List-Unsubscribe": "One-Click"})
        assert refused.status_code == 403

        page = client.get(preferences_path)
        assert page.status_code == 200, page.text
        assert '<html lang="en">' in page.text

        shown = client.get(confirm_path)
        assert shown.status_code == 200, shown.text
        token = confirm_path.split("token=")[1]
        done = client.post("/preferences/confirm", data={"token": token, "csrf": _csrf(shown.text)})
        assert done.status_code == 200 and "Thank you, it is confirmed" in done.text
        assert _status(client, auth, "newsletter", "email") == "granted"

        assert client.get(unsubscribe_path).status_code == 200
        one_click = client.post(unsubscribe_path, data={"List-Unsubscribe": "One-Click"})
        assert one_click.status_code == 200, one_click.text
        assert _status(client, auth, "newsletter", "email") == "withdrawn"

        # Links mailed now are signed for the same identity, so they outlast the next change as well.
        fresh = client.post(f"/v1/subjects/{REF}/preference-links", json={}, headers=auth)
        assert fresh.status_code == 200, fresh.text
        assert fresh.json()["url"].startswith(f"{MOVED_URL}/preferences?token=")

    again = settings.with_overrides(public_url="https://third.example", mail_dir=outbox)
    with TestClient(create_app(again, clock=clock), raise_server_exceptions=False) as client:
        path = fresh.json()["url"].removeprefix(MOVED_URL)
        assert client.get(path).status_code == 200
