"""The banner never loses a choice: refused with 503 or 429, or made offline, it is kept (localStorage, under the
consent id, with its choice id) and sent again, same id, until the server records it, once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from e2e.banner_host import BannerSite, banner_site, stored_choice

DIALOG = "#ckb [role=dialog]"
REJECTED = {("analytics", "reject_all"), ("ads", "reject_all"), ("personalisation", "reject_all")}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BannerSite]:
    with banner_site(tmp_path_factory.mktemp("banner-resend")) as running:
        yield running


def _recorded(page: Any) -> None:
    """Wait until the server acknowledged the choice (the pending flag leaves the cookie)."""
    page.wait_for_function(
        "() => document.cookie.includes('ds_consent') && !document.cookie.includes('%22p%22')", timeout=30_000
    )


def _waiting(page: Any, consent_id: str) -> list[dict[str, Any]]:
    kept: list[dict[str, Any]] = json.loads(page.evaluate(f"localStorage.getItem('ckb:{consent_id}') || '[]'"))
    return kept


def test_refused_with_503_then_429_the_choice_is_sent_again_and_recorded_once(page: Any, site: BannerSite) -> None:
    sent: list[dict[str, Any]] = []
    cors = {"Access-Control-Allow-Origin": site.host.url, "Access-Control-Expose-Headers": "Retry-After"}

    def flaky(route: Any) -> None:
        if route.request.method != "POST":
            route.continue_()
            return
        sent.append(route.request.post_data_json)
        if len(sent) <= 2:  # what a database fault answers
            route.fulfill(status=503, headers=cors, content_type="application/problem+json", body='{"status":503}')
        elif len(sent) == 3:  # what the rate limit answers
            headers = {**cors, "Retry-After": "1"}
            route.fulfill(status=429, headers=headers, content_type="application/problem+json", body='{"status":429}')
        else:
            route.continue_()

    page.route("**/v1/cookie-consents", flaky)
    page.goto(site.page("fr"))
    page.wait_for_selector(DIALOG)
    page.get_by_role("button", name="Tout refuser").click()
    _recorded(page)
    assert len(sent) == 4, "two 503s, one 429, then recorded"
    assert len({json.dumps(body, sort_keys=True) for body in sent}) == 1, "the same body each time, same choice id"
    choice = stored_choice(page)
    assert choice is not None and sent[0]["consent_id"] == choice["id"] and sent[0]["choice_id"]
    events = site.events(choice["id"])
    assert sorted((e["purpose"], e["method"]) for e in events) == sorted(REJECTED), "recorded exactly once"
    assert _waiting(page, choice["id"]) == [], "nothing left to send"

    # An answer lost after the commit: the banner's next sending is answered again, and nothing is written.
    again = httpx.post(f"{site.api.url}/v1/cookie-consents", json=sent[0], headers={"Origin": site.host.url})
    assert again.status_code == 200 and [e["id"] for e in again.json()["events"]] == [e["id"] for e in events]
    assert len(site.events(choice["id"])) == 3


def test_a_choice_made_offline_is_sent_at_the_next_page_load(page: Any, site: BannerSite) -> None:
    page.goto(site.page("fr"))
    page.wait_for_selector(DIALOG)
    page.context.set_offline(True)
    page.get_by_role("button", name="Tout refuser").click()
    page.wait_for_function("window.ran !== undefined")
    choice = stored_choice(page)
    assert choice is not None and choice.get("p") == 1, "applied at once, not yet recorded"
    kept = _waiting(page, choice["id"])
    assert [(k["method"], k["consent_id"]) for k in kept] == [("reject_all", choice["id"])] and kept[0]["choice_id"]
    unknown = httpx.get(f"{site.api.url}/v1/subjects/{choice['id']}/events", headers=site.api.token("consent:read"))
    assert unknown.status_code == 404, "nothing recorded yet"
    context = page.context
    page.close()

    context.set_offline(False)
    later = context.new_page()
    later.goto(site.page("fr"))
    _recorded(later)
    assert later.locator(DIALOG).count() == 0, "the choice holds; the banner does not ask again"
    assert sorted((e["purpose"], e["method"]) for e in site.events(choice["id"])) == sorted(REJECTED)
    assert _waiting(later, choice["id"]) == []
