"""The record of processing activities' verb: `record` prints it (GDPR 30(1)), as Markdown or JSON."""

from __future__ import annotations

import argparse
import json
import sys

from server.settings import Settings
from server.verbs import Verb, in_database


def _format_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("md", "json"), default="md")


def record(settings: Settings, args: argparse.Namespace) -> int:
    from server.clock import utc_now
    from server.record.processing import RecordDeclarationError, build_record, render_markdown

    async def work() -> int:
        try:
            built = await build_record(settings.policy_dir, utc_now())
        except RecordDeclarationError as exc:
            print(exc.detail, file=sys.stderr)  # a malformed declaration in purposes.yaml, named
            return 2
        print(json.dumps(built.as_json(), indent=2) if args.format == "json" else render_markdown(built))
        return 0

    return in_database(settings, work)


VERBS: list[Verb] = [
    Verb(
        ("record",),
        "print the record of processing activities (GDPR 30(1))",
        run=record,
        arguments=_format_argument,
    ),
]
