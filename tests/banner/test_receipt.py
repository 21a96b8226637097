"""A banner choice has one receipt: the one the ledger signs and stores, in the visitor's proof bundle, and handed to
the browser."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator

import pytest
from joserfc import jws
from joserfc.jwk import KeySet
from starlette.testclient import TestClient

from server.app import create_app
from server.settings import Settings
from tests.helpers.api import bearer
from tests.helpers.banner import CONSENT_ID, VISITOR, choice, post
from tests.helpers.clock import Clock


@pytest.fixture
def visitor(settings: Settings, clock: Clock) -> Iterator[TestClient]:
    with TestClient(create_app(settings, clock=clock), raise_server_exceptions=False, client=VISITOR) as client:
        yield client


def test_the_browser_gets_the_receipt_that_is_stored_and_proved(visitor: TestClient) -> None:
    handed = post(visitor, choice(visitor, "accept_all", ["preferences", "analytics", "marketing"])).json()["receipt"]
    stored = visitor.get(f"/v1/subjects/{CONSENT_ID}/receipts", headers=bearer(visitor, "proof:read")).json()
    assert [r["receipt"] for r in stored["receipts"]] == [handed]
    bundle = visitor.get(f"/v1/subjects/{CONSENT_ID}/proof", headers=bearer(visitor, "proof:read"))
    with zipfile.ZipFile(io.BytesIO(bundle.content)) as archive:
        receipts = [archive.read(n).decode() for n in archive.namelist() if n.startswith("receipts/")]
    assert receipts == [handed]
    keys = KeySet.import_key_set(visitor.get("/.well-known/jwks.json").json())
    claims = json.loads(jws.deserialize_compact(handed, keys, algorithms=["ES256"]).payload)
    # The Kantara record and the banner's own claims, in one signed payload.
    assert claims["version"] == "KI-CR-v1.1.0" and claims["jti"] == claims["consentReceiptID"]
    assert (claims["site"], claims["consent_id"], claims["touchpoint"]) == ("demo", CONSENT_ID, "banner")
