"""The committed build of the banner (`widgets/banner/dist/`, what the server serves) is exactly what esbuild makes of
the sources in `widgets/banner/`: rebuilt here with the pinned esbuild, the bytes must be the same. After editing
the sources, `cd widgets && npm ci && npm run build` and commit `dist/` with them."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from server.banner.bundle import DIST, SCRIPT, STYLESHEET, WIDGET_DIR, build
from tests.helpers.paths import REPO

WIDGETS = REPO / "widgets"


def test_the_committed_build_is_what_the_sources_build_to(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is missing: scripts/test installs it (npm), with esbuild")
    installed = WIDGETS / "node_modules" / "esbuild" / "package.json"
    if not installed.is_file():
        pytest.fail("esbuild is missing: scripts/test installs it into widgets/node_modules (npm ci)")
    pinned = json.loads((WIDGETS / "package-lock.json").read_text())["packages"]["node_modules/esbuild"]["version"]
    version = json.loads(installed.read_text())["version"]
    assert version == pinned, f"esbuild {version} is installed, the lock pins {pinned}: run `npm ci` in widgets/"
    done = subprocess.run(
        [node, str(WIDGETS / "build.mjs"), str(tmp_path)],
        cwd=WIDGETS,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for name in (SCRIPT, STYLESHEET):
        rebuilt, committed = (tmp_path / name).read_bytes(), (WIDGET_DIR / DIST / name).read_bytes()
        assert rebuilt == committed, f"{DIST}/{name} is not the build of the sources: run `npm run build` in widgets/"


def test_the_served_bundle_is_the_committed_build_with_its_stylesheet_inlined() -> None:
    bundle = build()
    assert bundle.js == (WIDGET_DIR / DIST / SCRIPT).read_bytes()
    assert bundle.css == (WIDGET_DIR / DIST / STYLESHEET).read_bytes().strip()
    assert bundle.js.count(bundle.css) == 1 and bundle.css.startswith(b"#ckb{")
    assert bundle.js.startswith(b'"use strict";\n(()=>{'), "one strict classic script, its names kept out of the page"


def test_a_build_without_its_stylesheet_inlined_is_refused(tmp_path: Path) -> None:
    dist = tmp_path / DIST
    dist.mkdir()
    (dist / SCRIPT).write_bytes(b'"use strict";(()=>{})();\n')
    (dist / STYLESHEET).write_bytes(b"#ckb{color:red}\n")
    with pytest.raises(ValueError, match="inlined exactly once"):
        build(tmp_path)
    (dist / STYLESHEET).unlink()
    with pytest.raises(FileNotFoundError, match="npm run build"):
        build(tmp_path)
