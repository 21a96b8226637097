"""Staff-typed text inside a Markdown document (the breach notification, the record of processing), kept as text.

The document is read raw, pasted into an authority's form or rendered by whatever viewer opens it. Typed text
must not become structure or active content there: a heading, a list, a thematic break, a code block, a link
(`javascript:` included), an image, raw HTML, or the end of a quote or of a list item.

- `md`: a value inside a line (after "- Retention: ", in a heading): newlines folded, active characters escaped.
- `md_block`: a text on lines of its own (a description): each line escaped, and escaped again where its start
  would open a list, a heading, a break or a code block.
- `quoted`: every line of a text inside a blockquote.
"""

from __future__ import annotations

import re

_ACTIVE = re.compile(r"([\\`*_\[\]<>#|~!])")
_LINE_START = re.compile(r"^([-+=]|\d+(?=[.)]))")


def md(value: object) -> str:
    """`value` as literal Markdown text within a line."""
    return _ACTIVE.sub(r"\\\1", " ".join(str(value).split()))


def md_block(value: object) -> str:
    """`value` as literal Markdown paragraphs: its lines kept, none of them structure."""
    lines = []
    for line in str(value).split("\n"):
        escaped = _ACTIVE.sub(r"\\\1", line.strip())
        lines.append(
            _LINE_START.sub(lambda m: m.group(1) + "\\" if m.group(1)[0].isdigit() else "\\" + m.group(1), escaped)
        )
    return "\n".join(lines)


def quoted(value: object) -> str:
    """Every line of `value` inside a blockquote, blank lines included."""
    return "\n".join(f"> {line}".rstrip() for line in str(value).split("\n"))
