"""The command line's tree, built from the verbs each package declares (server/verbs.py, server/cli.py): `--help`
lists every group, every declared verb is routed to its declaration, and every verb that reads or writes the
database refuses one that lacks a migration (exit 3)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from server.cli import DECLARED, DESCRIPTION, PROG, main
from server.db import NOT_MIGRATED
from server.verbs import Group, Verb, parse, parser
from tests.databases import POLICY_DIR

VERBS = [declared for declared in DECLARED if isinstance(declared, Verb)]
GROUPS = [declared for declared in DECLARED if isinstance(declared, Group)]
DECLARED_WORDS = {verb.words for verb in VERBS}

# What a verb requires on its command line besides its words, for the verbs that require something.
REQUIRED: dict[tuple[str, ...], list[str]] = {
    ("clients", "create"): ["--name", "crm", "--scopes", "consent:check"],
    ("clients", "revoke"): ["cl_1"],
    ("clients", "rotate-secret"): ["cl_1"],
    ("clients", "set-scopes"): ["cl_1", "consent:check"],
    ("recipients", "add"): ["ESP", "https://esp.example/notices"],
    ("recipients", "disable"): ["ESP"],
    ("proof", "verify"): ["bundle.zip"],
    ("staff", "create"): ["--email", "eve@staff.example", "--name", "Eve", "--role", "agent"],
    ("backup",): ["consent.backup"],
}
# The verbs that do not refuse an unmigrated database: those that migrate first, one that touches no database, and
# `backup`, which copies a database of any release (the copy to take before migrating it).
NO_REFUSAL = {("serve",), ("migrate",), ("makemigrations",), ("demo",), ("keys", "rotate"), ("backup",)}


def _name(verb: Verb) -> str:
    return " ".join(verb.words)


def test_help_lists_every_group_and_top_level_verb() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "server", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    top = [
        declared.word if isinstance(declared, Group) else declared.words[0]
        for declared in DECLARED
        if isinstance(declared, Group) or len(declared.words) == 1
    ]
    assert "staff" in top
    assert f"{{{','.join(top)}}}" in done.stdout, done.stdout  # argparse's list of choices, in declaration order
    for group in GROUPS:
        assert group.help in done.stdout


@pytest.mark.parametrize("group", GROUPS, ids=lambda group: group.word)
def test_a_groups_help_lists_its_verbs(group: Group, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([group.word, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert group.help in out
    verbs = [verb.words[1] for verb in VERBS if verb.words[0] == group.word]
    assert verbs and f"{{{','.join(verbs)}}}" in out


def test_staff_gathers_the_desk_and_the_requests_verbs(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["staff", "--help"])
    assert "{create,list,reminders}" in capsys.readouterr().out


@pytest.mark.parametrize("verb", VERBS, ids=_name)
def test_every_declared_verb_is_routed_to_its_declaration(verb: Verb) -> None:
    chosen, args = parse(parser(PROG, DESCRIPTION, DECLARED), [*verb.words, *REQUIRED.get(verb.words, [])])
    assert chosen is verb
    assert "declared_verb" not in vars(args)


def test_the_required_arguments_above_are_of_declared_verbs() -> None:
    assert set(REQUIRED) <= DECLARED_WORDS
    assert NO_REFUSAL <= DECLARED_WORDS


def test_only_proof_verify_runs_without_settings() -> None:
    assert [verb.words for verb in VERBS if not verb.needs_settings] == [("proof", "verify")]


@pytest.mark.parametrize("verb", [v for v in VERBS if v.needs_settings and v.words not in NO_REFUSAL], ids=_name)
def test_a_database_verb_refuses_an_unmigrated_database(
    verb: Verb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no developer .env
    database = tmp_path / "never-migrated.sqlite3"
    for name, value in {
        "DATABASE_URL": f"sqlite://{database}",
        "DATA_DIR": str(tmp_path / "data"),
        "POLICY_DIR": str(POLICY_DIR),
        "ENVIRONMENT": "test",
    }.items():
        monkeypatch.setenv(name, value)
    assert main([*verb.words, *REQUIRED.get(verb.words, [])]) == NOT_MIGRATED
    captured = capsys.readouterr()
    assert "run `python -m server migrate` first" in captured.err
    assert captured.out == ""


def _run(settings: object, args: argparse.Namespace) -> int:
    return 0


def test_a_command_declared_twice_or_before_its_group_is_refused() -> None:
    verb = Verb(("ledger", "verify"), "again", run=_run)
    with pytest.raises(ValueError, match="declared twice"):
        parser(PROG, DESCRIPTION, [*DECLARED, verb])
    with pytest.raises(ValueError, match="declared twice"):
        parser(PROG, DESCRIPTION, [*DECLARED, Group("staff", "again")])
    with pytest.raises(ValueError, match="no group 'nowhere'"):
        parser(PROG, DESCRIPTION, [Verb(("nowhere", "verify"), "orphan", run=_run)])


def test_a_verb_runs_either_with_settings_or_offline() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        Verb(("x",), "neither")
    with pytest.raises(ValueError, match="exactly one"):
        Verb(("x",), "both", run=_run, offline=lambda args: 0)
    with pytest.raises(ValueError, match="one or two words"):
        Verb(("a", "b", "c"), "three", run=_run)
