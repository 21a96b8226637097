"""A readable, section-level diff between two policy versions (for re-consent: invariant 7, docs/design.md).

Policy texts are Markdown divided into `## ` sections whose headings stay identical between versions
(`policy_docs/README.md`). Sections are paired by heading; inside a changed section, blocks (paragraphs and list
items, parsed with markdown-it-py) are aligned with difflib, and a changed block shows its word-level changes.
The result is plain data; the template escapes every piece of text.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from markdown_it import MarkdownIt
from markdown_it.token import Token

_WORDS = re.compile(r"\s+|[^\s]+")
_md = MarkdownIt("commonmark")
PAIR_THRESHOLD = 0.5  # blocks this similar are shown as one changed block
REWRITE_THRESHOLD = 0.4  # below this, a changed block shows old and new whole rather than word by word


@dataclass(frozen=True)
class Piece:
    kind: str  # equal | insert | delete
    text: str


@dataclass(frozen=True)
class Block:
    tag: str  # p | li
    status: str  # equal | changed | added | removed
    pieces: tuple[Piece, ...]


@dataclass(frozen=True)
class SectionDiff:
    heading: str
    status: str  # equal | changed | added | removed
    blocks: tuple[Block, ...]


def strip_front_matter(text: str) -> str:
    if text.startswith("---\n"):
        end = text.find("\n---\n", 4)
        if end >= 0:
            return text[end + 5 :]
    return text


def sections(markdown: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """`[(heading, [(tag, plain text), ...]), ...]`; the text before the first `## ` has the heading ""."""
    result: list[tuple[str, list[tuple[str, str]]]] = [("", [])]
    tokens = _md.parse(strip_front_matter(markdown))
    stack: list[str] = []
    heading_level: str | None = None
    for token in tokens:
        if token.type.endswith("_open"):
            stack.append(token.type)
            if token.type == "heading_open":
                heading_level = token.tag
        elif token.type.endswith("_close"):
            if stack:
                stack.pop()
            if token.type == "heading_close":
                heading_level = None
        elif token.type == "inline":
            text = _plain(token)
            if heading_level == "h2":
                result.append((text, []))
            elif heading_level is not None:
                result[-1][1].append(("p", text))
            else:
                result[-1][1].append(("li" if "list_item_open" in stack else "p", text))
    if not result[0][1]:
        result.pop(0)
    return result


def _plain(token: Token) -> str:
    parts = []
    for child in token.children or []:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
    return "".join(parts).strip()


def section_diff(old: str, new: str) -> list[SectionDiff]:
    """The sections of `new` in order (with removed sections of `old` after them), each with its status."""
    old_sections = dict(sections(old))
    new_sections = sections(new)
    new_headings = {heading for heading, _ in new_sections}
    result = []
    for heading, blocks in new_sections:
        if heading not in old_sections:
            result.append(SectionDiff(heading, "added", tuple(_whole(b, "added") for b in blocks)))
            continue
        diffed = _blocks(old_sections[heading], blocks)
        status = "equal" if all(b.status == "equal" for b in diffed) else "changed"
        result.append(SectionDiff(heading, status, tuple(diffed)))
    for heading, blocks in old_sections.items():
        if heading not in new_headings:
            result.append(SectionDiff(heading, "removed", tuple(_whole(b, "removed") for b in blocks)))
    return result


def _whole(block: tuple[str, str], status: str) -> Block:
    kind = {"added": "insert", "removed": "delete"}.get(status, "equal")
    return Block(block[0], status, (Piece(kind, block[1]),))


def _blocks(old: list[tuple[str, str]], new: list[tuple[str, str]]) -> list[Block]:
    matcher = difflib.SequenceMatcher(None, [b[1] for b in old], [b[1] for b in new], autojunk=False)
    out: list[Block] = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            out.extend(_whole(b, "equal") for b in new[j1:j2])
        elif op == "delete":
            out.extend(_whole(b, "removed") for b in old[i1:i2])
        elif op == "insert":
            out.extend(_whole(b, "added") for b in new[j1:j2])
        else:  # replace: pair similar blocks in order; the others are added or removed
            out.extend(_pair(old[i1:i2], new[j1:j2]))
    return out


def _pair(olds: list[tuple[str, str]], news: list[tuple[str, str]]) -> list[Block]:
    out: list[Block] = []
    j = 0
    for before in olds:
        match = next(
            (
                k
                for k in range(j, len(news))
                if news[k][0] == before[0] and _similarity(before[1], news[k][1]) >= PAIR_THRESHOLD
            ),
            None,
        )
        if match is None:
            out.append(_whole(before, "removed"))
            continue
        out.extend(_whole(b, "added") for b in news[j:match])
        out.append(Block(news[match][0], "changed", tuple(word_diff(before[1], news[match][1]))))
        j = match + 1
    out.extend(_whole(b, "added") for b in news[j:])
    return out


def _similarity(old: str, new: str) -> float:
    return difflib.SequenceMatcher(None, _WORDS.findall(old), _WORDS.findall(new), autojunk=False).ratio()


def word_diff(old: str, new: str) -> list[Piece]:
    """Word-level changes; a block rewritten past recognition reads better as the old text, then the new one."""
    a, b = _WORDS.findall(old), _WORDS.findall(new)
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    if matcher.ratio() < REWRITE_THRESHOLD:
        return [Piece("delete", old), Piece("insert", new)]
    pieces: list[Piece] = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            _add(pieces, "equal", "".join(b[j1:j2]))
            continue
        if op in ("delete", "replace"):
            _add(pieces, "delete", "".join(a[i1:i2]))
        if op in ("insert", "replace"):
            _add(pieces, "insert", "".join(b[j1:j2]))
    return pieces


def _add(pieces: list[Piece], kind: str, text: str) -> None:
    if not text:
        return
    if pieces and pieces[-1].kind == kind:
        pieces[-1] = Piece(kind, pieces[-1].text + text)
    else:
        pieces.append(Piece(kind, text))
