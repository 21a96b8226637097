"""When the database cannot be reached, each surface says so in its own form: the desk in its error page (an htmx
request in its flash area), the preference center and the public request pages in theirs, the banner's endpoints
as a problem with CORS headers (so that the banner reads it and sends the choice again), the API as problem+json;
all 503 with Retry-After. PostgreSQL made to refuse every connection (`ALLOW_CONNECTIONS false` and its backends
terminated) is the outage; afterwards the same app answers again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from starlette.testclient import TestClient

from tests.helpers.api import bearer
from tests.helpers.app import services_of
from tests.helpers.banner import ORIGIN, choice
from tests.helpers.console import sign_in
from tests.helpers.sql import admin_sql, terminate_backends

HTML = {"Accept": "text/html,application/xhtml+xml"}


@contextlib.contextmanager
def database_closed(database_url: str) -> Iterator[None]:
    database = urlsplit(database_url).path.lstrip("/")
    admin_sql(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
    terminate_backends(database)
    try:
        yield
    finally:
        admin_sql(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')


def _unavailable(answer: object) -> None:
    status = getattr(answer, "status_code", None)
    headers = getattr(answer, "headers", {})
    assert status == 503, (status, getattr(answer, "text", "")[:300])
    assert headers.get("retry-after"), dict(headers)


@pytest.mark.parametrize("backend", ["postgres"])
def test_every_surface_answers_503_in_its_own_form_and_recovers(client: TestClient, database_url: str) -> None:
    api = bearer(client)
    csrf = sign_in(client, "agent")
    token, _ = services_of(client).links.issue("someone", "preferences")
    cookies = dict(client.cookies)
    banner_body = choice(client, "reject_all", [])

    with database_closed(database_url):
        page = client.get("/console", headers=HTML)
        _unavailable(page)
        assert page.headers["content-type"].startswith("text/html") and "desk" in page.text, page.text[:300]

        fragment = client.post(
            "/console/customers/someone/link",
            data={"csrf": csrf or ""},
            headers={**HTML, "HX-Request": "true", "X-CSRF-Token": csrf or "", "Origin": "http://testserver"},
        )
        assert fragment.status_code == 200 and fragment.headers["hx-retarget"] == "#flash", fragment.text[:300]
        assert fragment.headers["retry-after"], dict(fragment.headers)

        client.cookies.clear()
        preferences = client.get(f"/preferences?token={token}", headers={**HTML, "Accept-Language": "en"})
        _unavailable(preferences)
        assert "Unavailable for a moment" in preferences.text, preferences.text[:500]
        assert 'class="pc-' in preferences.text or "pc-" in preferences.text

        public = client.get(f"/requests?token={token}&lang=en", headers=HTML)
        _unavailable(public)
        assert "send it again in a moment" in public.text, public.text[:500]

        # The banner's configuration comes from the catalogue the process holds: it still answers.
        assert client.get("/v1/banner/config?site=demo", headers={"Origin": ORIGIN}).status_code == 200

        banner = client.post("/v1/cookie-consents", json=banner_body, headers={"Origin": ORIGIN})
        _unavailable(banner)
        assert banner.headers["access-control-allow-origin"] == ORIGIN
        assert banner.headers["access-control-expose-headers"] == "Retry-After"
        assert banner.json()["type"] in ("/problems/service-unavailable", "/problems/database-busy")

        checked = client.get("/v1/consents/check?subject=someone&purpose=offers&channel=email", headers=api)
        _unavailable(checked)
        assert checked.headers["content-type"] == "application/problem+json"
        assert checked.json()["type"] == "/problems/service-unavailable"

        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["database"] != "ok", ready.text

    client.cookies.update(cookies)
    assert client.get("/console", headers=HTML).status_code == 200
    assert client.get("/v1/consents/check?subject=someone&purpose=offers&channel=email", headers=api).status_code == 200
    assert client.get("/readyz").status_code == 200
