"""`python -m server <verb>`: the service's command line, one argparse tree built from the verbs each package
declares (its `cli` module's `VERBS`, gathered in `DECLARED`). The entry points (`serve`, `migrate`,
`makemigrations`, `demo`) are declared here."""

from __future__ import annotations

import argparse
import asyncio
import sys

from server import backup
from server.auth import cli as auth
from server.dsr import cli as dsr
from server.policies import cli as policies
from server.proof import cli as proof
from server.recipients import cli as recipients
from server.record import cli as record
from server.settings import Settings, SettingsError
from server.staff import cli as staff
from server.verbs import Group, Verb, parse, parser

PROG = "python -m server"
DESCRIPTION = "The consent ledger's command line. `python -m server <group> --help` lists a group's verbs."


def main(argv: list[str] | None = None) -> int:
    verb, args = parse(parser(PROG, DESCRIPTION, DECLARED), sys.argv[1:] if argv is None else argv)
    if verb.offline is not None:  # `proof verify`: reads no settings, no database
        return verb.offline(args)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    assert verb.run is not None  # a Verb has exactly one of run and offline
    return verb.run(settings, args)


def _workers_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workers",
        type=int,
        choices=range(1, 65),
        metavar="N",
        help="server processes on the one port (default: WEB_CONCURRENCY, 1)",
    )


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from server.logs import configure_logging
    from server.serving import configure, uvicorn_options

    workers = getattr(args, "workers", None) or settings.web_concurrency
    configure_logging(settings.log_level)
    if workers > 1:
        return _serve_processes(settings, workers)
    from server.app import create_app
    from server.runtime import tune_gc

    configure(settings)
    app = create_app(settings)
    tune_gc()
    # uvicorn's own proxy headers stay off: server.middleware.proxy believes FORWARDED_ALLOW_IPS' headers.
    uvicorn.run(app, **uvicorn_options(settings), proxy_headers=False)
    return 0


def _serve_processes(settings: Settings, workers: int) -> int:
    """`workers` processes, each building the app from the environment (`server.asgi:create`) on the port this one
    binds, and restarted by it if one dies. The migrations are checked here first: a worker that refused to start
    would be started again and again."""
    import os

    import uvicorn

    from server.db import with_database
    from server.serving import uvicorn_options

    async def migrated() -> int:
        return 0

    status = asyncio.run(with_database(settings.database_url, migrated))
    if status:
        return status
    # The worker processes read their settings from the environment: the number of processes too, which shares
    # the stream workers out between them (server.settings).
    os.environ["WEB_CONCURRENCY"] = str(workers)
    # uvicorn's own proxy headers stay off: server.middleware.proxy believes FORWARDED_ALLOW_IPS' headers.
    uvicorn.run("server.asgi:create", factory=True, workers=workers, **uvicorn_options(settings), proxy_headers=False)
    return 0


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from server.migrate import apply_migrations

    asyncio.run(apply_migrations(settings.database_url, quiet=False))
    print("migrations applied")
    return 0


def _migration_name(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name")


def cmd_makemigrations(settings: Settings, args: argparse.Namespace) -> int:
    from server.migrate import make_migrations

    paths = asyncio.run(make_migrations(settings.database_url, args.name))
    print("\n".join(paths) if paths else "no changes detected")
    return 0


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from server.demo import prepare_demo

    info = asyncio.run(prepare_demo(settings))
    print(info, flush=True)  # before uvicorn takes over: a pipe or a log file must see the URLs
    return cmd_serve(settings, args)


ENTRY_VERBS: list[Verb] = [
    Verb(("serve",), "run the HTTP server", run=cmd_serve, arguments=_workers_argument),
    Verb(("migrate",), "apply database migrations", run=cmd_migrate),
    Verb(("makemigrations",), "write a migration for model changes", run=cmd_makemigrations, arguments=_migration_name),
    Verb(
        ("demo",),
        "migrate, sync policies, seed demo data, print URLs and serve",
        run=cmd_demo,
        arguments=_workers_argument,
    ),
]

# Every verb on the command line, in the order `--help` lists them. A package's verbs are here only when its list
# is named here: importing a declaration registers nothing.
DECLARED: list[Group | Verb] = [
    *ENTRY_VERBS,
    *policies.VERBS,
    *auth.VERBS,
    *recipients.VERBS,
    *proof.VERBS,
    *record.VERBS,
    *staff.VERBS,
    *dsr.VERBS,
    *backup.VERBS,
]
