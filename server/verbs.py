"""Command-line verbs as declarations: each package lists the verbs it owns (a module-level `VERBS`), and
`server/cli.py` gathers those lists and builds one argparse tree from them with `parser`.

A declaration registers nothing by being imported: only the lists the entry point names are on the command line.
A package's `cli` module imports what a verb runs inside the verb's function, not at the top, because
`python -m server` imports every package's declarations to build its parser and should load only what the verb it
runs needs.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from server.settings import Settings

# argparse's names for the first and second word, as they appear in its messages ("argument verb: invalid choice")
_DESTS = ("verb", "action")
_DECLARED = "declared_verb"  # the namespace attribute carrying the verb a command line chose; removed by `parse`


def no_arguments(parser: argparse.ArgumentParser) -> None:
    """For a verb that takes none."""


@dataclass(frozen=True)
class Group:
    """A first word that only gathers verbs (`ledger` in `ledger verify`), with its help text."""

    word: str
    help: str


@dataclass(frozen=True)
class Verb:
    """One command: `python -m server <words...>`, at most two words, the first a `Group` when there are two.

    Exactly one of `run` and `offline` is given: `run` gets the settings read from the environment (a configuration
    error exits 2 before it runs); `offline` reads no settings and no database (`proof verify`)."""

    words: tuple[str, ...]
    help: str
    run: Callable[[Settings, argparse.Namespace], int] | None = None
    offline: Callable[[argparse.Namespace], int] | None = None
    arguments: Callable[[argparse.ArgumentParser], None] = no_arguments

    def __post_init__(self) -> None:
        if not 1 <= len(self.words) <= len(_DESTS):
            raise ValueError(f"{self.words}: a verb is one or two words")
        if (self.run is None) == (self.offline is None):
            raise ValueError(f"{' '.join(self.words)}: give exactly one of run and offline")

    @property
    def needs_settings(self) -> bool:
        return self.run is not None


def parser(prog: str, description: str, declarations: Iterable[Group | Verb]) -> argparse.ArgumentParser:
    """One argparse tree from the declarations, in their order. A group comes before its verbs; a words tuple or a
    group declared twice is a ValueError (two packages claiming one command)."""
    root = argparse.ArgumentParser(prog=prog, description=description)
    top = root.add_subparsers(dest=_DESTS[0], required=True)
    groups: dict[str, argparse._SubParsersAction[argparse.ArgumentParser]] = {}
    taken: set[tuple[str, ...]] = set()
    for declared in declarations:
        words = (declared.word,) if isinstance(declared, Group) else declared.words
        if words in taken:
            raise ValueError(f"{' '.join(words)} is declared twice")
        taken.add(words)
        if isinstance(declared, Group):
            group = top.add_parser(declared.word, help=declared.help, description=declared.help)
            groups[declared.word] = group.add_subparsers(dest=_DESTS[1], required=True)
            continue
        if len(words) == 1:
            siblings = top
        elif words[0] in groups:
            siblings = groups[words[0]]
        else:
            raise ValueError(f"{' '.join(words)}: no group {words[0]!r} declared before it")
        command = siblings.add_parser(words[-1], help=declared.help, description=declared.help)
        declared.arguments(command)
        command.set_defaults(**{_DECLARED: declared})
    return root


def in_database(settings: Settings, work: Callable[[], Awaitable[int]]) -> int:
    """Run a verb's `work` connected to the settings' database. On a database that has not applied every migration
    of this code, nothing is run and the exit status is 3 (`server.db.NOT_MIGRATED`), naming what is missing."""
    from server.db import with_database  # here: it loads the ORM, which `proof verify` and `--help` do without

    return asyncio.run(with_database(settings.database_url, work))


def operator_name() -> str:
    """Who runs an operator command, for the access log: the OS account and the host (`user@host`)."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (a container's arbitrary uid)
        user = f"uid {os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def parse(root: argparse.ArgumentParser, argv: list[str]) -> tuple[Verb, argparse.Namespace]:
    """The verb `argv` names and its arguments (argparse exits 2 with its message on a malformed command line)."""
    args = root.parse_args(argv)
    verb: Verb = vars(args).pop(_DECLARED)
    return verb, args
