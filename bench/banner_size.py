"""Weight of what a site loads for the cookie banner (gzip -9), printed beside the peers of ../shared/ANCHORS.md.

    python -m bench.banner_size

What is measured is what the server serves: the committed esbuild build, `widgets/banner/dist/banner.js` (rebuild
it with `cd widgets && npm ci && npm run build`). It carries its CSS, so it is the whole download; the JS and CSS are
also measured alone (the script with the inlined stylesheet cut out, and `dist/banner.css`). Target 6 KB; exits 1
above the CI budget of 8 KB (tests/banner/test_size.py runs this in the test suite).
"""

from __future__ import annotations

import gzip
import sys
from dataclasses import dataclass

from server.banner.bundle import build

TARGET = 6 * 1024
CI_BUDGET = 8 * 1024
# gzip -9 of JS + CSS as a site loads them (ANCHORS.md; "no server record, no GPC" for every one of them).
PEERS = (
    ("Osano cookieconsent 3.1.1", 8_070),
    ("orestbida vanilla-cookieconsent 3.1.0", 15_474),
    ("tarteaucitron 1.34.0 (core + fr + services + css)", 60_307),
    ("Klaro 0.7.22", 67_137),
    ("Fides banner (its own CI budget, warning level)", 45 * 1024),
)


@dataclass(frozen=True)
class Sizes:
    js_gzip: int  # the scripts alone, minified
    css_gzip: int  # the stylesheet alone, minified
    total_raw: int  # the served banner.js, CSS inlined
    total_gzip: int


def _gz(data: bytes) -> int:
    return len(gzip.compress(data, compresslevel=9, mtime=0))


def measure() -> Sizes:
    bundle = build()  # checks that the stylesheet is inlined exactly once
    return Sizes(
        js_gzip=_gz(bundle.js.replace(bundle.css, b"")),
        css_gzip=_gz(bundle.css),
        total_raw=len(bundle.js),
        total_gzip=bundle.gzip_size,
    )


def main(argv: list[str]) -> int:
    sizes = measure()
    rows = [
        (f"this banner: banner.js, CSS inlined ({sizes.total_raw:,} bytes raw)", sizes.total_gzip),
        ("  of which JS alone", sizes.js_gzip),
        ("  of which CSS alone", sizes.css_gzip),
        *PEERS,
    ]
    print(f"{'cookie banner (gzip -9, JS + CSS)':<60} {'bytes':>8} {'x ours':>7}")
    for name, size in rows:
        ratio = "" if name.startswith(" ") else f"{size / sizes.total_gzip:6.1f}x"
        print(f"{name:<60} {size:>8,} {ratio:>7}")
    print("server-side records and Global Privacy Control: this banner only")
    verdict = "within" if sizes.total_gzip <= TARGET else "OVER"
    print(f"target {TARGET:,} bytes: {verdict}; CI budget {CI_BUDGET:,} bytes")
    if sizes.total_gzip > CI_BUDGET:
        print(f"FAIL: {sizes.total_gzip:,} bytes gzip is over the CI budget of {CI_BUDGET:,}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
