"""Subject refs are compared in Unicode NFC, and refs one cannot see or tell apart are refused (the stable
`/problems/invalid-request`, parameter `ref`): two refs that look the same are always the same subject."""

from __future__ import annotations

import unicodedata
from urllib.parse import quote

import pytest
from starlette.testclient import TestClient

from server.errors import InvalidRequest
from server.kernel.params import subject_ref
from tests.helpers.api import record
from tests.helpers.console import sign_in

COMPOSED = "client-\u00e9lodie"  # é as one code point (NFC)
DECOMPOSED = unicodedata.normalize("NFD", COMPOSED)  # e + combining acute accent


def test_a_ref_sent_decomposed_is_the_same_subject_as_the_composed_one(
    client: TestClient, auth: dict[str, str]
) -> None:
    assert COMPOSED != DECOMPOSED
    written = record(client, auth, quote(DECOMPOSED), [("offers", "email", "grant")])
    assert written.status_code == 201, written.text
    assert written.json()["subject"] == COMPOSED
    again = record(client, auth, quote(COMPOSED), [("offers", "sms", "grant")])
    assert [e["seq"] for e in again.json()["events"]] == [2], "one subject, one chain"
    for form in (COMPOSED, DECOMPOSED):
        events = client.get(f"/v1/subjects/{quote(form)}/events", headers=auth)
        assert [e["seq"] for e in events.json()["events"]] == [1, 2], form
        answer = client.get(
            "/v1/consents/check", params={"subject": form, "purpose": "offers", "channel": "email"}, headers=auth
        ).json()
        assert answer["allowed"] is True, (form, answer)
    batch = client.post(
        "/v1/consents/check",
        json={"checks": [{"subject": DECOMPOSED, "purpose": "offers", "channel": "sms"}]},
        headers=auth,
    )
    assert batch.json()["results"][0]["allowed"] is True, batch.text


REFUSED = {
    "zero-width space (Cf)": "ada\u200blovelace",
    "right-to-left override (Cf)": "ada\u202elovelace",
    "byte order mark (Cf)": "\ufeffada",
    "line separator (Zl)": "ada\u2028lovelace",
    "paragraph separator (Zp)": "ada\u2029lovelace",
    "no-break space (Zs)": "ada\u00a0lovelace",
    "ideographic space (Zs)": "ada\u3000lovelace",
    "next line (Cc)": "ada\u0085lovelace",
}


@pytest.mark.parametrize("ref", REFUSED.values(), ids=REFUSED.keys())
def test_refs_with_invisible_characters_are_refused_on_every_path(
    client: TestClient, auth: dict[str, str], ref: str
) -> None:
    path = quote(ref)
    answers = [
        record(client, auth, path, [("offers", "email", "grant")]),
        client.get(f"/v1/subjects/{path}/consents", headers=auth),
        client.get(f"/v1/subjects/{path}/events", headers=auth),
        client.get(f"/v1/subjects/{path}/proof", headers=auth),
        client.post(f"/v1/subjects/{path}/preference-links", json={}, headers=auth),
    ]
    for answer in answers:
        assert answer.status_code == 422, (answer.request.url, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert answer.json()["type"] == "/problems/invalid-request" and answer.json()["parameter"] == "ref"
    documented = client.get("/problems/invalid-request")
    assert documented.status_code == 200 and "NFC" in documented.text
    # The console refuses it too, in its own page.
    sign_in(client, "agent")
    page = client.get(f"/console/customers/{path}")
    assert page.status_code == 422 and page.headers["content-type"].startswith("text/html"), page.text


def test_a_slash_is_never_part_of_a_ref() -> None:
    """A path cannot carry one (it would be another route); any other source of a ref is refused the same way."""
    with pytest.raises(InvalidRequest):
        subject_ref("shop/42")
    assert subject_ref("shop-42 x") == "shop-42 x"  # an ordinary space is fine
