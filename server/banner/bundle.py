"""The cookie banner as served: the committed build in `widgets/banner/dist/`, read once at start-up.

The sources are the ES modules of `widgets/banner/` (one concern each, entry `main.js`). esbuild bundles and
minifies them into one classic script with `banner.css` inlined as a string (one request, no flash of an unstyled
banner): `cd widgets && npm ci && npm run build` writes `dist/banner.js`, and `dist/banner.css`, the minified
stylesheet alone, to measure it. The build is committed, so the server never needs Node; tests/banner/test_build.py
rebuilds it and fails when the committed bytes differ from what the sources build to.

The files are found through the `widgets` package (importlib.resources): an installed wheel reads them from
site-packages exactly as a checkout reads them from its source tree.

`python -m server.banner.bundle` prints the served file's size.
"""

from __future__ import annotations

import gzip
import hashlib
import sys
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path


def _package_dir(package: str) -> Path:
    """Where an installed package's files are, as a directory (the demo pages are served from it by path)."""
    root = files(package)
    if not isinstance(root, Path):
        raise RuntimeError(f"the package {package} must be installed as files in a directory, not in an archive")
    return root


WIDGET_DIR = _package_dir("widgets") / "banner"
DIST = "dist"
SCRIPT = "banner.js"
STYLESHEET = "banner.css"


@dataclass(frozen=True)
class Bundle:
    js: bytes
    css: bytes  # minified, also inlined in `js`
    js_gzip: bytes  # compressed once (gzip -9), served to every client that accepts gzip

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.js).hexdigest()[:16]

    @property
    def etag(self) -> str:
        return f'"{self.digest}"'

    @property
    def gzip_size(self) -> int:
        return len(self.js_gzip)


def build(directory: Path = WIDGET_DIR) -> Bundle:
    """The served bundle from the banner's committed build in `directory/dist`, compressed once."""
    dist = directory / DIST
    script, stylesheet = dist / SCRIPT, dist / STYLESHEET
    if not script.is_file() or not stylesheet.is_file():
        raise FileNotFoundError(f"the banner's build is missing in {dist}: run `cd widgets && npm ci && npm run build`")
    js = script.read_bytes()
    css = stylesheet.read_bytes().strip()
    if not css or js.count(css) != 1:
        raise ValueError(f"{script}: expected {stylesheet.name} inlined exactly once; rebuild with `npm run build`")
    return Bundle(js, css, gzip.compress(js, compresslevel=9, mtime=0))


def main(argv: list[str]) -> int:
    bundle = build()
    print(f"banner.js: {len(bundle.js)} bytes, {bundle.gzip_size} bytes gzip -9, sha256 {bundle.digest}...")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
