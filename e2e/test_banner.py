"""The cookie banner in Debian's chromium, on a shop page served from another origin than the consent service.

One consent server and one shop for the module (every test opens a fresh browser context: no cookie is shared).
The shop page (widgets/banner/demo/index.html) holds blocked tags that set `window.ran[category]` and a cookie
of their category, and a gtag stand-in that keeps every call in `window.gtagCalls`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from e2e.banner_host import BannerSite, banner_site, stored_choice
from e2e.conftest import screenshot

DIALOG = "#ckb [role=dialog]"
ALL = ("preferences", "analytics", "marketing")
CONSENT_TYPES = (
    "ad_storage",
    "ad_user_data",
    "ad_personalization",
    "analytics_storage",
    "functionality_storage",
    "personalization_storage",
    "security_storage",
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BannerSite]:
    with banner_site(tmp_path_factory.mktemp("banner")) as running:
        yield running


def _open(page: Any, site: BannerSite, lang: str = "fr") -> None:
    page.goto(site.page(lang))
    page.wait_for_selector(DIALOG)


def _cookie_names(page: Any) -> set[str]:
    return {c["name"] for c in page.context.cookies()}


def _recorded(page: Any) -> None:
    """Wait until the server acknowledged the last choice (the pending flag leaves the cookie)."""
    page.wait_for_function("() => document.cookie.includes('ds_consent') && !document.cookie.includes('%22p%22')")


def _visible_after_dom_ready(page: Any) -> float:
    value: float = page.evaluate(
        """() => performance.getEntriesByName('cookie-banner:visible')[0].startTime
                 - performance.getEntriesByType('navigation')[0].domContentLoadedEventStart"""
    )
    return value


def test_blocked_tags_wait_for_consent_then_run_and_the_ledger_has_the_choice(page: Any, site: BannerSite) -> None:
    _open(page, site)
    print(f"\nbanner visible {_visible_after_dom_ready(page):.1f} ms after DOMContentLoaded (reported, not asserted)")
    # ePrivacy 5(3): nothing non-essential before consent.
    assert page.evaluate("window.ran") == {}
    assert page.locator("iframe[title=Advertisement]").get_attribute("src") is None
    assert _cookie_names(page) == set()
    calls = page.evaluate("window.gtagCalls")
    assert [c[:2] for c in calls] == [["consent", "default"]]
    default = calls[0][2]
    assert default.pop("wait_for_update") == 500
    assert default == {t: "granted" if t == "security_storage" else "denied" for t in CONSENT_TYPES}

    page.get_by_role("button", name="Tout accepter").click()
    page.wait_for_function("window.ran.analytics && window.ran.marketing && window.ran.preferences")
    assert page.locator("iframe[title=Advertisement]").get_attribute("src") == "./ad.html"
    calls = page.evaluate("window.gtagCalls")
    assert [c[:2] for c in calls] == [["consent", "default"], ["consent", "update"]]
    assert calls[1][2] == dict.fromkeys(CONSENT_TYPES, "granted")
    assert {"ds_lang", "ds_an_id", "pbx_uid", "ds_consent"} <= _cookie_names(page)

    _recorded(page)
    choice = stored_choice(page)
    assert choice is not None and choice["m"] == "accept_all" and choice["v"] == "1"
    events = site.events(choice["id"])
    shown_hash = site.config()["hash"]["fr"]
    assert {(e["purpose"], e["channel"], e["action"]) for e in events} == {
        ("analytics", "web", "grant"),
        ("ads", "web", "grant"),
        ("personalisation", "web", "grant"),
    }
    for event in events:
        assert event["touchpoint"] == "banner" and event["method"] == "accept_all"
        assert (event["policy"]["document"], event["policy"]["version"], event["policy"]["lang"]) == (
            "cookie-policy",
            "1",
            "fr",
        )
        assert event["ui_snapshot"] == shown_hash
        assert event["evidence"]["origin"] == site.host.url
        assert event["evidence"]["ip"] == "127.0.0.0/24"
    # The next page of the shop applies the stored choice at once, without asking again or recording again.
    page.reload()
    page.wait_for_function("window.ran.analytics === true")
    assert page.locator(DIALOG).count() == 0
    assert page.locator("#ckb-re").is_visible()
    assert len(site.events(choice["id"])) == 3


@pytest.mark.parametrize(("age_days", "asks"), [(181, False), (183, True)])
def test_the_banner_asks_again_after_six_months(browser: Any, site: BannerSite, age_days: int, asks: bool) -> None:
    """CNIL: a choice is asked again after the re-prompt interval (182 days); until then it applies silently."""
    stored = {"id": "ck_" + "r" * 22, "v": "1", "t": int(time.time()) - age_days * 86400, "c": list(ALL), "m": "save"}
    context = browser.new_context()
    context.add_cookies([{"name": "ds_consent", "value": quote(json.dumps(stored), safe=""), "url": site.host.url}])
    page = context.new_page()
    try:
        page.goto(site.page())
        page.wait_for_selector("#ckb-re", state="attached")
        # Wait for the outcome itself (the dialog, or every tag run) rather than a fixed delay a slow machine can
        # outlast, then leave time for anything wrong to happen.
        if asks:
            page.wait_for_selector(DIALOG)
        else:
            page.wait_for_function(" && ".join(f"window.ran[{json.dumps(tag)}] === true" for tag in ALL))
        page.wait_for_timeout(200)
        assert page.locator(DIALOG).count() == (1 if asks else 0)
        assert page.evaluate("window.ran") == ({} if asks else dict.fromkeys(ALL, True))
    finally:
        context.close()


def test_reject_all_sets_no_non_necessary_cookie(page: Any, site: BannerSite) -> None:
    _open(page, site)
    page.get_by_role("button", name="Tout refuser").click()
    _recorded(page)
    page.wait_for_timeout(200)  # anything a wrongly revived tag would do has had time to happen
    assert _cookie_names(page) == {"ds_consent"}
    assert page.evaluate("window.ran") == {}
    calls = page.evaluate("window.gtagCalls")
    assert [c[:2] for c in calls] == [["consent", "default"], ["consent", "update"]]
    assert calls[1][2] == {t: "granted" if t == "security_storage" else "denied" for t in CONSENT_TYPES}
    choice = stored_choice(page)
    assert choice is not None
    events = site.events(choice["id"])
    assert {(e["purpose"], e["action"], e["status"], e["method"]) for e in events} == {
        ("analytics", "deny", "refused", "reject_all"),
        ("ads", "deny", "refused", "reject_all"),
        ("personalisation", "deny", "refused", "reject_all"),
    }


def test_customise_then_withdraw_from_the_reopen_control(page: Any, site: BannerSite) -> None:
    _open(page, site, "en")
    page.get_by_role("button", name="Customise").click()
    switches = page.get_by_role("switch")
    assert switches.count() == 4
    necessary = page.get_by_role("switch", name="Strictly necessary cookies (always on)")
    assert necessary.is_checked() and necessary.is_disabled()
    for name in ("Personalisation", "Audience measurement", "Personalised advertising"):
        assert not page.get_by_role("switch", name=name).is_checked(), f"{name} is pre-ticked"
    page.get_by_role("switch", name="Audience measurement").check()
    page.get_by_role("button", name="Save my choices").click()
    page.wait_for_function("window.ran.analytics === true")
    assert page.evaluate("window.ran") == {"analytics": True}
    assert page.locator("p.ckb-sr[role=status]").text_content() == "Your cookie choices are saved."
    _recorded(page)
    assert "ds_an_id" in _cookie_names(page)

    # GDPR 7(3): withdrawing takes the persistent control, then one switch and save (or "Reject all").
    page.get_by_role("button", name="Cookies", exact=True).click()
    page.get_by_role("button", name="Customise").click()
    assert page.get_by_role("switch", name="Audience measurement").is_checked()
    page.get_by_role("switch", name="Audience measurement").uncheck()
    page.get_by_role("button", name="Save my choices").click()
    _recorded(page)
    assert "ds_an_id" not in _cookie_names(page), "withdrawal deletes the category's cookies"
    choice = stored_choice(page)
    assert choice is not None and choice["c"] == []
    analytics = [e for e in site.events(choice["id"]) if e["purpose"] == "analytics"]
    assert [(e["action"], e["status"], e["policy"]["lang"]) for e in analytics] == [
        ("grant", "granted", "en"),
        ("withdraw", "withdrawn", "en"),
    ]
    assert analytics[0]["ui_snapshot"] == site.config()["hash"]["en"]


def test_gpc_turns_marketing_off_and_is_recorded_as_gpc(browser: Any, site: BannerSite) -> None:
    context = browser.new_context(extra_http_headers={"Sec-GPC": "1"})
    context.add_init_script("Object.defineProperty(navigator, 'globalPrivacyControl', {get: () => true})")
    page = context.new_page()
    try:
        _open(page, site, "en")
        page.wait_for_function("document.cookie.includes('ds_consent') && !document.cookie.includes('%22p%22')")
        gpc_choice = stored_choice(page)
        assert gpc_choice is not None and gpc_choice["m"] == "gpc" and gpc_choice["c"] == []
        events = site.events(gpc_choice["id"])
        assert [(e["purpose"], e["action"], e["touchpoint"], e["method"]) for e in events] == [
            ("ads", "deny", "gpc", "gpc")
        ]
        assert events[0]["evidence"]["gpc"] is True
        # No explicit choice yet: the banner still asks, and says what GPC did.
        assert page.locator(DIALOG).is_visible()
        assert "Global Privacy Control" in page.locator(DIALOG).inner_text()
        screenshot(page, "banner-gpc-en")

        page.get_by_role("button", name="Accept all").click()
        page.wait_for_function("window.ran.analytics === true")
        page.wait_for_timeout(200)
        assert "marketing" not in page.evaluate("window.ran")
        assert "pbx_uid" not in _cookie_names(page)
        update = page.evaluate("window.gtagCalls")[-1]
        assert update[:2] == ["consent", "update"]
        assert {k: v for k, v in update[2].items() if k.startswith("ad_")} == {
            "ad_storage": "denied",
            "ad_user_data": "denied",
            "ad_personalization": "denied",
        }
        _recorded(page)
        latest = site.events(gpc_choice["id"])[1:]
        assert {(e["purpose"], e["action"]) for e in latest} == {
            ("analytics", "grant"),
            ("personalisation", "grant"),
            ("ads", "deny"),
        }
        assert all(e["evidence"]["gpc"] is True and e["touchpoint"] == "banner" for e in latest)
    finally:
        context.close()


def _focused(page: Any) -> str:
    text: str = page.evaluate("document.activeElement.textContent")
    return text


def _tab_to(page: Any, label: str, limit: int = 12) -> None:
    for _ in range(limit):
        page.keyboard.press("Tab")
        if _focused(page) == label:
            return
    raise AssertionError(f"Tab never reached {label!r}; focus is on {_focused(page)!r}")


def test_a_record_the_network_lost_is_sent_again_on_the_next_page(page: Any, site: BannerSite) -> None:
    page.route("**/v1/cookie-consents", lambda route: route.abort())
    _open(page, site)
    page.get_by_role("button", name="Tout refuser").click()
    page.wait_for_timeout(300)
    lost = stored_choice(page)
    assert lost is not None and lost.get("p") == 1, "applied at once, marked as not yet recorded"
    page.unroute("**/v1/cookie-consents")
    page.reload()
    _recorded(page)
    assert page.locator(DIALOG).count() == 0
    assert {(e["purpose"], e["method"]) for e in site.events(lost["id"])} == {
        ("analytics", "reject_all"),
        ("ads", "reject_all"),
        ("personalisation", "reject_all"),
    }


def test_keyboard_only_accept_reject_and_escape(page: Any, site: BannerSite) -> None:
    _open(page, site)
    # Focus moves into the dialog, Tab cycles inside it (focus trap: nothing behind it can be focused).
    assert page.evaluate("document.activeElement.getAttribute('role')") == "dialog"
    seen = []
    for _ in range(7):
        page.keyboard.press("Tab")
        seen.append(_focused(page))
        assert page.evaluate("document.activeElement.closest('#ckb') !== null"), seen
    assert seen[:5] == [
        "Continuer sans accepter",
        "Politique de cookies (version 1)",
        "Tout accepter",
        "Tout refuser",
        "Personnaliser",
    ]
    assert seen[5] == "Continuer sans accepter", "Tab wraps around inside the dialog"
    _tab_to(page, "Tout accepter")
    page.keyboard.press("Enter")
    page.wait_for_function("window.ran.marketing === true")
    _recorded(page)

    # Re-open with the keyboard, reject with Space; focus comes back to the control.
    page.locator("#ckb-re").focus()
    page.keyboard.press("Enter")
    page.wait_for_selector(DIALOG)
    _tab_to(page, "Tout refuser")
    page.keyboard.press("Space")
    page.wait_for_selector(DIALOG, state="detached")
    assert page.evaluate("document.activeElement.id") == "ckb-re"
    _recorded(page)
    assert _cookie_names(page) == {"ds_consent"}, "refusal deleted every non-necessary cookie"
    choice = stored_choice(page)
    assert choice is not None and choice["m"] == "reject_all"

    # Esc closes, and closing counts as refusal (CNIL 2020-092) - never as acceptance.
    page.keyboard.press("Enter")
    page.wait_for_selector(DIALOG)
    page.keyboard.press("Escape")
    page.wait_for_selector(DIALOG, state="detached")
    _recorded(page)
    choice = stored_choice(page)
    assert choice is not None and choice["m"] == "dismiss" and choice["c"] == []
    assert page.evaluate("document.activeElement.id") == "ckb-re"
    methods = [e["method"] for e in site.events(choice["id"]) if e["purpose"] == "ads"]
    assert methods == ["accept_all", "reject_all", "dismiss"]


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_axe_finds_no_violation_on_either_layer(page: Any, site: BannerSite, axe: Any, lang: str) -> None:
    _open(page, site, lang)
    assert page.locator("#ckb").get_attribute("lang") == lang
    assert axe(page, "#ckb") == []
    screenshot(page, f"banner-layer1-{lang}")
    page.get_by_role("button", name={"fr": "Personnaliser", "en": "Customise"}[lang]).click()
    page.wait_for_selector("#ckb [role=switch]")
    assert axe(page, "#ckb") == []
    screenshot(page, f"banner-layer2-{lang}")
    # WCAG 2.5.8: every control of the banner is at least 24 x 24 px.
    small = page.evaluate(
        """() => [...document.querySelectorAll('#ckb a, #ckb button, #ckb input, #ckb-re')]
                 .map(e => [e.textContent || e.name, e.getBoundingClientRect()])
                 .filter(([, r]) => r.width && (r.width < 24 || r.height < 24))
                 .map(([n, r]) => `${n}: ${r.width}x${r.height}`)"""
    )
    assert small == []


def test_reflows_at_320_px(page: Any, site: BannerSite, axe: Any) -> None:
    """WCAG 1.4.10: a 320 CSS px wide viewport (400 % zoom of 1280 px) needs no horizontal scrolling."""
    page.set_viewport_size({"width": 320, "height": 640})
    _open(page, site)
    for layer in (1, 2):
        overflow = page.evaluate(
            "() => [...document.querySelectorAll('#ckb *')].filter(e => e.getBoundingClientRect().right > 320.5)"
            ".map(e => e.tagName + ' ' + e.textContent.slice(0, 30))"
        )
        assert overflow == [], f"layer {layer}"
        assert page.evaluate("document.querySelector('.ckb-box').scrollWidth <= 320")
        screenshot(page, f"banner-320px-layer{layer}")
        if layer == 1:
            page.get_by_role("button", name="Personnaliser").click()
    assert axe(page, "#ckb") == []


def test_the_page_api_and_events(page: Any, site: BannerSite) -> None:
    page.add_init_script(
        """window.seen = [];
           ['ready', 'change', 'recorded'].forEach(n => addEventListener('cookie-banner:' + n,
               e => seen.push([n, e.detail])));"""
    )
    _open(page, site, "en")
    assert page.evaluate("CookieBanner.accepted('necessary')") is True
    assert page.evaluate("CookieBanner.accepted('analytics')") is False
    page.evaluate("window.fromApi = []; CookieBanner.onChange(s => fromApi.push(s))")
    page.get_by_role("button", name="Reject all").click()
    page.evaluate("CookieBanner.show()")
    page.get_by_role("button", name="Accept all").click()
    page.wait_for_function("window.seen.filter(s => s[0] === 'recorded').length === 2")
    seen = page.evaluate("window.seen")
    assert [s[0] for s in seen if s[0] != "recorded"] == ["ready", "change", "change"]
    changes = [s[1] for s in seen if s[0] == "change"]
    assert changes == [
        {"categories": [], "method": "reject_all"},
        {"categories": list(ALL), "method": "accept_all"},
    ]
    assert page.evaluate("fromApi") == changes
    receipt = [s[1] for s in seen if s[0] == "recorded"][-1]["receipt"]
    assert receipt.count(".") == 2, "a compact JWS"
    assert page.evaluate("CookieBanner.accepted('marketing')") is True


def test_blocked_cookies_break_neither_the_banner_nor_the_page(page: Any, site: BannerSite) -> None:
    """A browser refusing every cookie: the banner still asks and applies the choice, and throws nothing itself."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(error.stack or str(error)))
    page.add_init_script(
        """Object.defineProperty(Document.prototype, 'cookie', {
               get() { throw new DOMException('cookies are blocked', 'SecurityError'); },
               set(v) { throw new DOMException('cookies are blocked', 'SecurityError'); }});"""
    )
    _open(page, site)
    page.get_by_role("button", name="Tout accepter").click()
    page.wait_for_function("window.ran.analytics === true && window.ran.marketing === true")
    assert page.locator("#ckb-re").is_visible()
    # The shop's own tags do touch document.cookie and fail; none of the errors comes from the banner.
    assert errors, "the page's own cookie writes failed, as they should in this browser"
    assert not [e for e in errors if "banner" in e], errors
