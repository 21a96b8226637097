"""The preference center in a real browser (Debian's chromium) against a real server process on loopback.

One server for the module (SMTP to an aiosmtpd sink on loopback, embedding allowed for a host page served on
another origin: http://127.0.0.1:PORT, same site as the server, and http://localhost:PORT, another site, where the
browser sends the frame none of our SameSite cookies); each test uses its own subject. The re-consent walk runs its
own server, because it publishes a policy version.
"""

from __future__ import annotations

import email
import email.policy
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller

from e2e.conftest import REPO, LiveServer, free_port, screenshot, start_server, stop_server

HOST_PAGE = Path(__file__).resolve().parent / "pc_host" / "shop.html"
pytestmark = pytest.mark.slow


class Sink:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.port = free_port()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 OK"

    def wait_for(self, to: str, timeout: float = 10) -> EmailMessage:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.messages:
                if message["To"] == to:
                    return message
            time.sleep(0.05)
        raise AssertionError(f"no mail to {to}")


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture(scope="module")
def sink() -> Iterator[Sink]:
    handler = Sink()
    controller = Controller(handler, hostname="127.0.0.1", port=handler.port)
    controller.start()
    try:
        yield handler
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The company's site: static pages on another origin (another port)."""
    root = tmp_path_factory.mktemp("pc_host")
    httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), partial(_Quiet, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    finally:
        httpd.shutdown()
        httpd.server_close()


def other_site(origin: str) -> str:
    """The same host page seen from another site: localhost is not 127.0.0.1 to the browser."""
    return origin.replace("//127.0.0.1:", "//localhost:")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, sink: Sink, host: tuple[str, Path]) -> Iterator[LiveServer]:
    live = start_server(
        tmp_path_factory.mktemp("pc_server"),
        extra_env={
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(sink.port),
            "SMTP_STARTTLS": "false",
            "EMBED_ORIGINS": f"{host[0]},{other_site(host[0])}",
        },
    )
    try:
        yield live
    finally:
        stop_server(live)


@pytest.fixture(scope="module")
def api(server: LiveServer) -> dict[str, str]:
    return server.token()


def link(server: LiveServer, api: dict[str, str], ref: str, **contact: str) -> str:
    answer = httpx.post(f"{server.url}/v1/subjects/{ref}/preference-links", json=contact, headers=api)
    answer.raise_for_status()
    return str(answer.json()["url"])


def grant(
    server: LiveServer, api: dict[str, str], ref: str, decisions: list[tuple[str, str, str]], version: str = "2"
) -> None:
    body = {
        "policy": {"document": "privacy-policy", "version": version, "lang": "fr"},
        "decisions": [{"purpose": p, "channel": c, "action": a} for p, c, a in decisions],
    }
    httpx.post(f"{server.url}/v1/subjects/{ref}/consents", json=body, headers=api).raise_for_status()


def reason(server: LiveServer, api: dict[str, str], ref: str, purpose: str, channel: str) -> str:
    answer = httpx.get(
        f"{server.url}/v1/consents/check", params={"subject": ref, "purpose": purpose, "channel": channel}, headers=api
    )
    answer.raise_for_status()
    return str(answer.json()["reason"])


def eventually(probe: Callable[[], Any], expected: Any, timeout: float = 20) -> None:
    """Polls until `probe()` equals `expected`: the server reloads its catalogue every 5 s, on a request."""
    deadline = time.monotonic() + timeout
    value = probe()
    while value != expected and time.monotonic() < deadline:
        time.sleep(0.1)
        value = probe()
    assert value == expected


def switch(page: Any, purpose: str, channel: str) -> Any:
    return page.locator(f"#sw-{purpose}-{channel}")


def wcag(page: Any, axe: Callable[..., list[dict[str, Any]]], label: str) -> None:
    violations = axe(page)
    assert violations == [], (label, violations)


# --- the walks ------------------------------------------------------------------------------------------------------


def test_open_link_toggle_and_the_check_api_answers(page: Any, server: LiveServer, api: dict[str, str]) -> None:
    ref = "e2e-toggle"
    page.goto(link(server, api, ref, locale="fr"))
    assert "token=" not in page.url, "the token leaves the address bar (session cookie)"
    sms = switch(page, "offers", "sms")
    assert sms.get_attribute("aria-checked") == "false"
    sms.click()
    page.wait_for_selector("#sw-offers-sms[aria-checked='true']")
    assert "Enregistré" in page.locator("#pc-status").inner_text()
    eventually(lambda: reason(server, api, ref, "offers", "sms"), "granted")
    switch(page, "offers", "sms").click()
    page.wait_for_selector("#sw-offers-sms[aria-checked='false']")
    eventually(lambda: reason(server, api, ref, "offers", "sms"), "withdrawn")
    page.reload()  # from the session cookie, no token in the URL
    assert switch(page, "offers", "sms").get_attribute("aria-checked") == "false"


def test_unsubscribe_from_all_marketing_in_one_click(page: Any, server: LiveServer, api: dict[str, str]) -> None:
    ref = "e2e-all"
    grant(server, api, ref, [("offers", "email", "grant"), ("offers", "sms", "grant"), ("partners", "sms", "grant")])
    page.goto(link(server, api, ref, locale="en"))
    assert switch(page, "offers", "email").get_attribute("aria-checked") == "true"
    page.locator("#pc-unsubscribe-all").click()
    page.wait_for_selector("#sw-offers-email[aria-checked='false']")
    assert "no longer receive any marketing" in page.locator("#pc-status").inner_text()
    for purpose, channel, expected in [
        ("offers", "email", "withdrawn"),
        ("offers", "sms", "withdrawn"),
        ("partners", "sms", "withdrawn"),
        ("offers", "post", "objected"),
    ]:
        assert reason(server, api, ref, purpose, channel) == expected


def test_double_opt_in_by_clicking_the_link_in_the_mail(
    page: Any, server: LiveServer, api: dict[str, str], sink: Sink
) -> None:
    ref, address = "e2e-doi", "doi@example.com"
    page.goto(link(server, api, ref, email=address, locale="en"))
    switch(page, "newsletter", "email").click()
    page.wait_for_selector("#sw-newsletter-email-note")
    assert "Waiting for your confirmation" in page.locator("#sw-newsletter-email-note").inner_text()
    assert reason(server, api, ref, "newsletter", "email") == "pending_confirmation"
    mail = sink.wait_for(address)
    body = mail.get_body(preferencelist=("plain",))
    assert body is not None
    url = re.search(r"http://\S+/preferences/confirm\?token=\S+", body.get_content())
    assert url, body.get_content()
    page.goto(url.group(0))
    assert reason(server, api, ref, "newsletter", "email") == "pending_confirmation", "opening the link is not enough"
    page.locator("#pc-confirm").click()
    page.wait_for_selector("text=Thank you, it is confirmed")
    assert reason(server, api, ref, "newsletter", "email") == "granted"
    page.goto(url.group(0))  # a replayed link
    assert page.locator("h1").inner_text() == "Already confirmed"


def test_one_click_unsubscribe_by_post_and_get_changes_nothing(
    page: Any, server: LiveServer, api: dict[str, str]
) -> None:
    ref = "e2e-rfc8058"
    grant(server, api, ref, [("offers", "email", "grant")])
    answer = httpx.post(
        f"{server.url}/v1/subjects/{ref}/unsubscribe-links", json={"purpose": "offers", "channel": "email"}, headers=api
    )
    url, headers = answer.json()["url"], answer.json()["headers"]
    assert headers["List-Unsubscribe"] == f"<{url}>"
    page.goto(url)  # what a link scanner or a curious click does
    assert page.locator("#pc-unsubscribe").is_visible()
    assert reason(server, api, ref, "offers", "email") == "granted"
    one_click = httpx.post(url, data={"List-Unsubscribe": "One-Click"})  # what the mail provider does
    assert one_click.status_code == 200
    assert reason(server, api, ref, "offers", "email") == "withdrawn"


def test_refused_links_get_a_friendly_page(page: Any, server: LiveServer, api: dict[str, str]) -> None:
    url = link(server, api, "e2e-refused")
    tampered = url[:-3] + ("AAA" if not url.endswith("AAA") else "BBB")
    page.goto(tampered + "&lang=en")
    assert page.locator("h1").inner_text() == "This link is not valid"
    assert page.locator("#pc-email").is_visible()


def test_keyboard_only(page: Any, server: LiveServer, api: dict[str, str]) -> None:
    ref = "e2e-keyboard"
    page.goto(link(server, api, ref, locale="en"))

    def tab_to(target: str) -> None:
        for _ in range(40):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.id") == target:
                return
        pytest.fail(f"#{target} cannot be reached with Tab")

    tab_to("sw-newsletter-email")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none", "visible focus (WCAG 2.4.7)"
    tab_to("sw-offers-email")
    page.keyboard.press("Space")
    page.wait_for_selector("#sw-offers-email[aria-checked='true']")
    assert page.evaluate("document.activeElement.id") == "sw-offers-email", "focus stays on the switch"
    page.keyboard.press("Enter")
    page.wait_for_selector("#sw-offers-email[aria-checked='false']")
    assert page.evaluate("document.activeElement.id") == "sw-offers-email"
    assert reason(server, api, ref, "offers", "email") == "withdrawn"


def test_accessible_in_both_languages_desktop_and_320px(
    browser: Any, server: LiveServer, api: dict[str, str], axe: Any
) -> None:
    ref = "e2e-a11y"
    grant(server, api, ref, [("offers", "sms", "grant"), ("newsletter", "email", "grant")])
    grant(server, api, ref, [("partners", "email", "grant")], version="1")  # shows the re-consent block too
    url = link(server, api, ref, email="a11y@example.com")
    context = browser.new_context(bypass_csp=True)  # axe-core is injected as an inline script
    try:
        page = context.new_page()
        for lang in ("fr", "en"):
            page.set_viewport_size({"width": 1280, "height": 900})
            page.goto(f"{url}&lang={lang}")
            assert page.locator("html").get_attribute("lang") == lang
            wcag(page, axe, f"{lang} 1280px")
            screenshot(page, f"preferences-{lang}")
            page.set_viewport_size({"width": 320, "height": 800})
            page.reload()
            scroll = page.evaluate("document.documentElement.scrollWidth")
            assert scroll <= 320, f"reflow at 320 px (WCAG 1.4.10): content is {scroll} px wide"
            wcag(page, axe, f"{lang} 320px")
            screenshot(page, f"preferences-{lang}-320px")
            # WCAG 2.5.8: controls are at least 24 x 24 px (links inside a sentence are exempt)
            small = page.evaluate(
                """() => [...document.querySelectorAll('button, a')]
                    .filter(e => e.offsetParent && getComputedStyle(e).display !== 'inline')
                    .filter(e => { const r = e.getBoundingClientRect(); return r.height < 24 || r.width < 24; })
                    .map(e => e.outerHTML.slice(0, 80))"""
            )
            assert small == [], small
    finally:
        context.close()


def test_embed_resizes_inside_a_host_page_on_another_origin(
    page: Any, server: LiveServer, api: dict[str, str], host: tuple[str, Path]
) -> None:
    origin, root = host
    token = link(server, api, "e2e-embed").split("token=")[1]
    html = HOST_PAGE.read_text().replace("{{SERVER}}", server.url).replace("{{TOKEN}}", token)
    (root / "shop.html").write_text(html)
    page.set_viewport_size({"width": 1000, "height": 700})
    page.goto(f"{origin}/shop.html")
    frame = page.frame_locator("iframe.pc-embed-frame")
    frame.locator("#sw-offers-sms").wait_for()

    def sizes() -> tuple[int, int]:
        outer = page.evaluate(
            "Math.round(document.querySelector('iframe.pc-embed-frame').getBoundingClientRect().height)"
        )
        inner = page.frames[1].evaluate("Math.ceil(document.body.getBoundingClientRect().height)")
        return int(outer), int(inner)

    eventually(lambda: sizes()[0] == sizes()[1] and sizes()[0] > 480, True)
    frame.locator("#sw-offers-sms").click()
    frame.locator("#sw-offers-sms[aria-checked='true']").wait_for()
    eventually(lambda: sizes()[0] == sizes()[1], True)
    assert reason(server, api, "e2e-embed", "offers", "sms") == "granted"
    screenshot(page, "preferences-embedded")


def shop_page(host: tuple[str, Path], name: str, server: LiveServer, token: str) -> str:
    """The host page embedding the center with `token`, at its address on another site than the server."""
    origin, root = host
    (root / name).write_text(HOST_PAGE.read_text().replace("{{SERVER}}", server.url).replace("{{TOKEN}}", token))
    return f"{other_site(origin)}/{name}"


def test_embedded_on_another_site_a_refused_link_still_gets_a_new_one(
    page: Any, server: LiveServer, api: dict[str, str], host: tuple[str, Path], sink: Sink
) -> None:
    """The "link not valid" page inside the iframe of another site: its form needs no cookie, so it goes through."""
    address = "cross-site@example.com"
    token = link(server, api, "e2e-cross-site-link", email=address, locale="en").split("token=")[1]
    tampered = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    page.goto(shop_page(host, "shop-refused.html", server, tampered))
    frame = page.frame_locator("iframe.pc-embed-frame")
    frame.locator("h1").filter(has_text="This link is not valid").wait_for()
    frame.locator("#pc-email").fill(address)
    frame.get_by_role("button", name="Email me a new link").click()
    frame.locator("h1").filter(has_text="Check your inbox").wait_for()
    assert "/preferences?token=" in str(sink.wait_for(address).get_body(preferencelist=("plain",)))


def test_embedded_on_another_site_switches_work_and_other_rights_open_a_new_tab(
    page: Any, server: LiveServer, api: dict[str, str], host: tuple[str, Path]
) -> None:
    ref = "e2e-cross-site"
    token = link(server, api, ref, locale="en").split("token=")[1]
    page.goto(shop_page(host, "shop-cross-site.html", server, token))
    frame = page.frame_locator("iframe.pc-embed-frame")
    frame.locator("#sw-offers-sms").click()
    frame.locator("#sw-offers-sms[aria-checked='true']").wait_for()
    assert reason(server, api, ref, "offers", "sms") == "granted"
    # The request pages refuse to be framed: the link opens them in a tab of their own, the shop stays.
    with page.expect_popup() as opened:
        frame.locator("a[href^='/requests']").click()
    tab = opened.value
    tab.locator("h1").filter(has_text="Make a request about your data").wait_for()
    assert tab.url.startswith(f"{server.url}/requests")
    assert page.url.endswith("/shop-cross-site.html")
    frame.locator("#sw-offers-sms").wait_for()
    # So do the policy texts (in a row swapped in by htmx after the switch), which would replace the center there.
    with page.expect_popup() as opened:
        frame.locator("#row-offers a[href^='/policies/']").click()
    assert opened.value.url.startswith(f"{server.url}/policies/privacy-policy/")
    assert page.url.endswith("/shop-cross-site.html")
    frame.locator("#sw-offers-sms[aria-checked='true']").wait_for()


def test_a_refused_change_shows_why_with_javascript(
    page: Any, server: LiveServer, api: dict[str, str], sink: Sink
) -> None:
    """htmx swaps the center's own 4xx answers: "Send the email again" past the limit (5 mails a person in 15
    minutes: the switch's and four more) says so, not "could not be saved"."""
    address = "resend@example.com"
    page.goto(link(server, api, "e2e-resend", email=address, locale="en"))
    switch(page, "newsletter", "email").click()
    page.wait_for_selector("#sw-newsletter-email-resend")

    def mails() -> int:
        return sum(1 for message in sink.messages if message["To"] == address)

    eventually(mails, 1)
    for sent in range(2, 6):
        page.locator("#sw-newsletter-email-resend").click()
        eventually(mails, sent)
    page.locator("#sw-newsletter-email-resend").click()
    status = page.locator("#pc-status")
    status.filter(has_text="Too many emails were sent already").wait_for()
    assert "could not be saved" not in status.inner_text()
    assert page.locator("#sw-newsletter-email-resend").is_visible(), "the row is still there"
    time.sleep(0.5)
    assert mails() == 5


def test_reconsent_diff_after_publishing_the_material_v2(page: Any, tmp_path: Path, browser: Any) -> None:
    policies = tmp_path / "policy_docs"
    shutil.copytree(REPO / "policy_docs", policies)
    v2 = tmp_path / "privacy-policy-2"
    shutil.move(policies / "privacy-policy" / "2", v2)  # v2 not published yet
    live = start_server(tmp_path / "data", extra_env={"POLICY_DIR": str(policies)})
    try:
        api = live.token()
        ref = "e2e-reconsent"
        grant(live, api, ref, [("partners", "email", "grant")], version="1")
        url = link(live, api, ref, locale="en")
        page.goto(url)
        assert page.locator("#reconsent-partners").count() == 0
        assert reason(live, api, ref, "partners", "email") == "granted"

        shutil.move(v2, policies / "privacy-policy" / "2")
        assert "published privacy-policy/2/en" in live.cli("policies", "sync")
        eventually(lambda: reason(live, api, ref, "partners", "email"), "reconsent_required")
        page.goto(url)
        section = page.locator("#reconsent-partners")
        assert section.is_visible()
        assert "Assurances Sereine SA" in section.locator("ins").all_inner_texts()[-1] or any(
            "Assurances Sereine SA" in text for text in section.locator("ins").all_inner_texts()
        )
        assert any("phone number" in text for text in section.locator("ins").all_inner_texts())
        screenshot(page, "preferences-reconsent-en")
        page.locator("#reconsent-partners-accept").click()
        page.wait_for_selector("#reconsent-partners", state="detached")
        assert reason(live, api, ref, "partners", "email") == "granted"
    finally:
        stop_server(live)


def test_demo_page_and_dev_outbox_click_through(page: Any, live_server: LiveServer) -> None:
    """What a new user does after `scripts/dev`: /demo, switch the newsletter on, read the mail at /dev/mail,
    click its link, confirm."""
    page.goto(f"{live_server.url}/demo?lang=en")
    frame = page.frame_locator("iframe.pc-embed-frame")
    frame.locator("#sw-newsletter-email").click()
    frame.locator("#sw-newsletter-email-note").wait_for()
    page.goto(f"{live_server.url}/dev/mail")
    page.get_by_role("link", name="Please confirm: Newsletter").click()
    page.locator("a[href*='/preferences/confirm?token=']").click()
    page.locator("#pc-confirm").click()
    page.wait_for_selector("text=Thank you, it is confirmed")
    api = live_server.token("consent:check")
    assert reason(live_server, api, "demo-alice", "newsletter", "email") == "granted"
