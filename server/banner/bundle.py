"""Building `banner.js` from `widgets/banner/`: concatenation and light minification, in Python, at start-up.

No Node tool chain: the sources are plain scripts, one concern per file, concatenated in `SOURCES` order inside one
function scope, with `banner.css` inlined as a string (one request, no flash of unstyled banner). Minification only
drops what the source style guarantees is safe to drop: block comments, whole-line `//` comments, indentation and
blank lines (the sources never put `/*` in a string nor a comment after code). The readable sources stay the truth.

The sources are found through the `widgets` package (importlib.resources): an installed wheel reads them from
site-packages exactly as a checkout reads them from its source tree.

`python -m server.banner.bundle [OUT]` writes the built file (default: print its size).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
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
SOURCES = (
    "core.js",
    "strings.js",
    "storage.js",
    "cookies.js",
    "scripts.js",
    "consent-mode.js",
    "gpc.js",
    "i18n.js",
    "api.js",
    "events.js",
    "ui.js",
    "main.js",
)
CSS = "banner.css"
CSS_PLACEHOLDER = '"__CSS__"'


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
    if not directory.is_dir():
        raise FileNotFoundError(f"the banner sources are missing: {directory} is not a directory")
    css = minify_css((directory / CSS).read_text(encoding="utf-8"))
    parts = [minify_js((directory / name).read_text(encoding="utf-8")) for name in SOURCES]
    body = "\n".join(parts)
    if body.count(CSS_PLACEHOLDER) != 1:
        raise ValueError(f"{directory}: expected the placeholder {CSS_PLACEHOLDER} exactly once in the sources")
    body = body.replace(CSS_PLACEHOLDER, json.dumps(css))
    js = '(()=>{"use strict";\n' + body + "\n})();\n"
    data = js.encode("utf-8")
    return Bundle(data, css.encode("utf-8"), gzip.compress(data, compresslevel=9, mtime=0))


def minify_js(source: str) -> str:
    without_blocks = re.sub(r"/\*.*?\*/", "", source, flags=re.DOTALL)
    lines = (line.strip() for line in without_blocks.splitlines())
    return "\n".join(line for line in lines if line and not line.startswith("//"))


def minify_css(source: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", source, flags=re.DOTALL)
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\s*([{};,>])\s*", r"\1", text)
    text = re.sub(r":\s+", ":", text)
    return text.replace(";}", "}").strip()


def main(argv: list[str]) -> int:
    bundle = build()
    if argv:
        Path(argv[0]).write_bytes(bundle.js)
    print(f"banner.js: {len(bundle.js)} bytes, {bundle.gzip_size} bytes gzip -9, sha256 {bundle.digest}...")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
