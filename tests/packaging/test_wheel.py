"""The built wheel runs on its own: installed into a fresh virtual environment outside the checkout, it migrates a
database, syncs the operator's policy texts and serves the banner, the embed loader, the preference center and the
console, every file of theirs read from site-packages.

The wheel is built with `pip wheel --no-deps` from a copy of the checkout (so no `build/` left over from another
build can slip into it, and nothing is written into the checkout). Its dependencies are the test environment's own,
made visible to the new environment by a `.pth` file, so that no install from the network is needed; its code comes
from the wheel only, and the test asserts so. `policy_docs/` is the operator's content, not the package's: it is
copied beside the install, where the default `POLICY_DIR` finds it, as an operator would.

One test, in steps: building and installing take most of its time, and a fixture shared by several tests would be
built again each time pytest-xdist ran another module's test between two of them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import site
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.helpers.paths import REPO
from tests.helpers.processes import access_token, wait_ready
from tests.ports import free_port

# Not part of the source tree: at its top, the environment, local data and build output; anywhere, caches and
# installed npm packages.
TOP_LEVEL_NOISE = shutil.ignore_patterns(".git", ".venv", "data", "build", "*.egg-info", ".hypothesis")
NOISE = shutil.ignore_patterns("node_modules", "__pycache__", ".*_cache")
PACKAGES = ("server", "preference_center", "migrations", "widgets")
SHIPPED_WIDGETS = ("banner/dist/banner.js", "banner/dist/banner.css", "banner/demo/index.html", "embed.js")


@dataclass
class Install:
    venv: Path
    site_packages: Path
    operator: Path  # the working directory of every command: policy_docs/ and data/ are there
    env: dict[str, str]

    def run(self, *args: str) -> str:
        done = subprocess.run(
            [str(self.venv / "bin" / "consent-ledger"), *args],
            env=self.env,
            cwd=self.operator,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, f"consent-ledger {' '.join(args)}: {done.stdout}{done.stderr}"
        return done.stdout


@pytest.mark.slow
def test_the_installed_wheel_runs_outside_the_checkout(tmp_path: Path) -> None:
    install = _build_and_install(tmp_path)
    _assert_the_code_comes_from_the_wheel(install)
    for name in SHIPPED_WIDGETS:
        shipped = install.site_packages / "widgets" / name
        assert shipped.read_bytes() == (REPO / "widgets" / name).read_bytes(), name
    assert not (install.site_packages / "widgets" / "node_modules").exists(), "the build tool is not the package's"
    install.run("migrate")
    install.run("policies", "sync")
    with _serving(install) as base_url:
        _assert_the_widgets_are_served(base_url)
        _assert_the_preference_center_is_served(install, base_url)
        _assert_the_console_sign_in_is_served(base_url)


def _build_and_install(root: Path) -> Install:
    source = Path(shutil.copytree(REPO, root / "source", ignore=_not_source))
    _pip("wheel", "--no-deps", "--quiet", "--wheel-dir", root / "wheels", source, cwd=root)
    (wheel,) = (root / "wheels").glob("consent_ledger-*.whl")

    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    (site_packages,) = (venv / "lib").glob("python3.*/site-packages")
    # The dependencies: the test environment's site-packages, appended to sys.path after the new environment's own.
    # Its .pth files (among them the editable install of this checkout) are not run from there.
    (site_packages / "test_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    _pip("--python", venv / "bin" / "python", "install", "--no-deps", "--no-index", "--quiet", wheel, cwd=root)

    operator = root / "operator"
    shutil.copytree(REPO / "policy_docs", operator / "policy_docs")
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(operator),
        "DATABASE_URL": f"sqlite://{operator / 'data' / 'consent.sqlite3'}",
        "SECRET_KEY": "wheel-test-secret-key-0123456789abcdef0123456789",
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
        "PORT": str(port),
        "STREAM_WORKERS": "0",
    }
    return Install(venv, site_packages, operator, env)


def _not_source(directory: str, names: list[str]) -> set[str]:
    ignored = set(NOISE(directory, names))
    return ignored | set(TOP_LEVEL_NOISE(directory, names)) if Path(directory) == REPO else ignored


def _pip(*args: str | Path, cwd: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@contextlib.contextmanager
def _serving(install: Install) -> Iterator[str]:
    """`consent-ledger serve` from the install, until /readyz answers; SIGTERM on the way out."""
    log = install.operator / "server.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(install.venv / "bin" / "consent-ledger"), "serve"],
            env=install.env,
            cwd=install.operator,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        base_url = install.env["PUBLIC_URL"]
        wait_ready(base_url, process, lambda: log.read_text(errors="replace")[-4000:])
        yield base_url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _assert_the_code_comes_from_the_wheel(install: Install) -> None:
    """What the commands import, from their working directory: every package from the new site-packages, nothing
    from the checkout but the dependencies in its .venv."""
    probe = "import json, sys, " + ", ".join(PACKAGES) + "; print(json.dumps({'path': sys.path, 'files': {"
    probe += ", ".join(f"'{name}': {name}.__file__" for name in PACKAGES) + "}}))"
    done = subprocess.run(
        [str(install.venv / "bin" / "python"), "-c", probe],
        env=install.env,
        cwd=install.operator,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    found = json.loads(done.stdout)
    for name, file in found["files"].items():
        assert Path(file).is_relative_to(install.site_packages), (name, file)
    checkout = [p for p in found["path"] if p and Path(p).resolve().is_relative_to(REPO)]
    assert all(Path(p).resolve().is_relative_to(REPO / ".venv") for p in checkout), checkout


def _assert_the_widgets_are_served(base_url: str) -> None:
    banner = httpx.get(f"{base_url}/widgets/banner.js", headers={"Accept-Encoding": "identity"})
    assert banner.status_code == 200
    assert banner.headers["content-type"] == "text/javascript; charset=utf-8"
    assert banner.content == (REPO / "widgets" / "banner" / "dist" / "banner.js").read_bytes()
    assert b"#ckb{" in banner.content, "the CSS is inlined"
    pinned = re.fullmatch(r"<(/widgets/banner\.[0-9a-f]{16}\.js)>; rel=\"canonical\"", banner.headers["link"])
    assert pinned is not None and httpx.get(base_url + pinned[1]).content == banner.content
    embed = httpx.get(f"{base_url}/widgets/embed.js")
    assert embed.status_code == 200 and embed.headers["content-type"] == "text/javascript; charset=utf-8"
    assert embed.content == (REPO / "widgets" / "embed.js").read_bytes()
    demo = httpx.get(f"{base_url}/demo/banner")
    assert demo.status_code == 200 and f'src="{base_url}/widgets/banner.js"' in demo.text


def _assert_the_preference_center_is_served(install: Install, base_url: str) -> None:
    client = json.loads(install.run("clients", "create", "--name", "wheel", "--scopes", "consent:write"))
    token = access_token(base_url, client["client_id"], client["client_secret"])
    link = httpx.post(
        f"{base_url}/v1/subjects/wheel-cust/preference-links",
        json={"email": "wheel@example.com", "locale": "en"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert link.status_code == 200, link.text
    page = httpx.get(link.json()["url"])
    assert page.status_code == 200 and '<html lang="en">' in page.text
    _assert_stylesheets(base_url, page.text)


def _assert_the_console_sign_in_is_served(base_url: str) -> None:
    console = httpx.get(f"{base_url}/console")
    assert console.status_code == 303 and console.headers["location"].startswith("/console/login")
    login = httpx.get(base_url + console.headers["location"])
    assert login.status_code == 200 and login.headers["content-type"] == "text/html; charset=utf-8"
    assert "/console/static/console.css" in _assert_stylesheets(base_url, login.text)


def _assert_stylesheets(base_url: str, html: str) -> list[str]:
    """Every stylesheet the page links to answers 200 with CSS; returns their paths."""
    links = re.findall(r'<link rel="stylesheet" href="([^"]+)"', html)
    assert links, "the page links to no stylesheet"
    for href in links:
        answer = httpx.get(base_url + href)
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/css"), href
        assert answer.content.strip(), href
    return [href.split("?")[0] for href in links]
