"""Staff-typed text inside a Markdown document (the breach notification), kept as text.

The document is read raw, pasted into an authority's form or rendered by whatever viewer opens it. Typed text
must not become structure or active content there: a heading, a link (`javascript:` included), an image, raw
HTML, or the end of a quote. `md` escapes what could; `quoted` keeps every line of a text inside a blockquote.
"""

from __future__ import annotations

import re

_ACTIVE = re.compile(r"([\\`*_\[\]<>#|~!])")


def md(value: object) -> str:
    """`value` as literal Markdown text (CommonMark backslash escapes)."""
    return _ACTIVE.sub(r"\\\1", str(value))


def quoted(value: object) -> str:
    """Every line of `value` inside a blockquote, blank lines included."""
    return "\n".join(f"> {line}".rstrip() for line in str(value).split("\n"))
