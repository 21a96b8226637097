"""Approved answers (`policy_docs/answers/<id>.<lang>.md`): versioned, in French and English, searchable, so every
agent gives the same validated answer. Answers whose id starts with `script-` are what agents read to a customer
before recording a decision; the filled-in text is stored as the decision's UI snapshot (GDPR 7(1))."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from string import Formatter
from typing import Any

import yaml
from markdown_it import MarkdownIt

LANGS = ("fr", "en")
SCRIPT_PREFIX = "script-"
PLACEHOLDERS = frozenset(
    {"controller", "purpose", "channel", "policy_title", "policy_version", "policy_url", "dpo_email"}
)
_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False})


class AnswerSourceError(ValueError):
    """An answer file is malformed; the message names the file."""


@dataclass(frozen=True)
class Answer:
    id: str
    version: int
    lang: str
    title: str
    tags: tuple[str, ...]
    body: str
    path: Path

    @property
    def is_script(self) -> bool:
        return self.id.startswith(SCRIPT_PREFIX)

    def fill(self, values: dict[str, str]) -> str:
        """The body with its placeholders filled in (an unknown or missing placeholder is an error)."""
        return self.body.format_map(_Strict(values))

    def html(self, values: dict[str, str]) -> str:
        return _markdown.render(self.fill(values))


class _Strict(dict[str, str]):
    def __missing__(self, key: str) -> str:
        raise KeyError(f"no value for the placeholder {{{key}}}")


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _words(text: str) -> list[str]:
    return [w for w in re.split(r"[^\w]+", _fold(text)) if w]


def read_answer(path: Path) -> Answer:
    text = path.read_text(encoding="utf-8")
    if not text.startswith("---\n") or (end := text.find("\n---\n", 4)) < 0:
        raise AnswerSourceError(f"{path}: front matter between '---' lines is missing")
    try:
        meta: dict[str, Any] = yaml.safe_load(text[4:end]) or {}
    except yaml.YAMLError as exc:
        raise AnswerSourceError(f"{path}: front matter is not valid YAML ({exc})") from None
    missing = {"id", "version", "lang", "title", "tags"} - set(meta)
    if missing:
        raise AnswerSourceError(f"{path}: front matter lacks {sorted(missing)}")
    answer = Answer(
        id=str(meta["id"]),
        version=int(meta["version"]),
        lang=str(meta["lang"]),
        title=str(meta["title"]),
        tags=tuple(str(t) for t in meta["tags"]),
        body=text[end + 5 :].strip() + "\n",
        path=path,
    )
    if path.name != f"{answer.id}.{answer.lang}.md" or answer.lang not in LANGS:
        raise AnswerSourceError(f"{path}: front matter says {answer.id}.{answer.lang}, the file name disagrees")
    unknown = {name for _, name, _, _ in Formatter().parse(answer.body) if name} - PLACEHOLDERS
    if unknown:
        raise AnswerSourceError(f"{path}: unknown placeholders {sorted(unknown)}")
    return answer


class AnswerBook:
    """Every approved answer, read once when the app is built (they change through a reviewed deploy)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        answers = [read_answer(p) for p in sorted(directory.glob("*.md")) if p.name != "README.md"]
        self.by_key = {(a.id, a.lang): a for a in answers}
        ids = {a.id for a in answers}
        for answer_id in ids:
            for lang in LANGS:
                if (answer_id, lang) not in self.by_key:
                    raise AnswerSourceError(f"{directory}: answer {answer_id!r} has no {lang} version")

    @classmethod
    def empty(cls, directory: Path) -> AnswerBook:
        book = cls.__new__(cls)
        book.directory, book.by_key = directory, {}
        return book

    def get(self, answer_id: str, lang: str) -> Answer | None:
        return self.by_key.get((answer_id, lang))

    def script(self, action: str, lang: str) -> Answer | None:
        return self.get(f"{SCRIPT_PREFIX}{action}", lang)

    def search(self, query: str, lang: str | None = None, limit: int = 20) -> list[Answer]:
        """Answers ranked by how many query words they contain (title and tags count more than the body);
        accents and case do not matter. An empty query lists every answer."""
        words = _words(query)
        scored = []
        for answer in self.by_key.values():
            if lang and answer.lang != lang:
                continue
            if not words:
                scored.append((0, answer))
                continue
            heading = set(_words(answer.title + " " + " ".join(answer.tags)))
            body = _fold(answer.body)
            score = 0
            for word in words:
                if word in heading:
                    score += 3
                elif any(h.startswith(word) for h in heading):
                    score += 2
                elif word in body:
                    score += 1
            if score:
                scored.append((score, answer))
        scored.sort(key=lambda pair: (-pair[0], pair[1].is_script, pair[1].title))
        return [answer for _, answer in scored[:limit]]
