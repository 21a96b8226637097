"""Approved answers (`policy_docs/answers/`): every answer in French and English with its front matter, scripts
that fill every placeholder, search that ignores case and accents, and files that `policies sync` never reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.console.answers import PLACEHOLDERS, AnswerBook, AnswerSourceError
from server.policies.documents import load_tree
from tests.databases import POLICY_DIR

ANSWERS = POLICY_DIR / "answers"
VALUES = {name: f"<{name}>" for name in PLACEHOLDERS}


def test_every_answer_exists_in_french_and_english() -> None:
    book = AnswerBook(ANSWERS)
    ids = {answer_id for answer_id, _ in book.by_key}
    questions = {i for i in ids if not i.startswith("script-")}
    assert len(questions) >= 6
    assert {"what-we-do-with-data", "unsubscribe", "copy-of-my-data", "delete-my-data"} <= questions
    for answer in book.by_key.values():
        assert answer.version >= 1 and answer.title and answer.tags
        assert answer.html(VALUES).startswith("<p>")
        assert "<script" not in answer.html(VALUES)


@pytest.mark.parametrize("action", ["grant", "deny", "withdraw", "object"])
@pytest.mark.parametrize("lang", ["fr", "en"])
def test_every_decision_has_a_script_that_fills_its_placeholders(action: str, lang: str) -> None:
    script = AnswerBook(ANSWERS).script(action, lang)
    assert script is not None and script.is_script
    text = script.fill(VALUES)
    assert "{" not in text and "<purpose>" in text and "<channel>" in text and "<policy_version>" in text


def test_search_ranks_title_and_tags_first_and_ignores_case_and_accents() -> None:
    book = AnswerBook(ANSWERS)
    assert book.search("UNSUBSCRIBE")[0].id == "unsubscribe"
    assert book.search("désinscription", "fr")[0].id == "unsubscribe"
    assert book.search("donnees effacer", "fr")[0].id == "delete-my-data"
    assert {a.lang for a in book.search("", "en")} == {"en"}
    assert book.search("zzzz") == []


def test_malformed_answers_are_refused_with_the_file_named(tmp_path: Path) -> None:
    good = "---\nid: a\nversion: 1\nlang: {lang}\ntitle: T\ntags: [x]\n---\n\nBody {{controller}}.\n"
    (tmp_path / "a.fr.md").write_text(good.format(lang="fr"))
    with pytest.raises(AnswerSourceError, match="has no en version"):
        AnswerBook(tmp_path)
    (tmp_path / "a.en.md").write_text(good.format(lang="en").replace("{controller}", "{secret}"))
    with pytest.raises(AnswerSourceError, match=r"a\.en\.md: unknown placeholders"):
        AnswerBook(tmp_path)
    (tmp_path / "a.en.md").write_text("no front matter")
    with pytest.raises(AnswerSourceError, match="front matter"):
        AnswerBook(tmp_path)
    (tmp_path / "a.en.md").write_text(good.format(lang="fr"))
    with pytest.raises(AnswerSourceError, match="file name disagrees"):
        AnswerBook(tmp_path)


def test_policies_sync_never_reads_the_answers() -> None:
    tree = load_tree(POLICY_DIR)
    assert not [d for d in tree.documents if "answers" in str(d.path)]
