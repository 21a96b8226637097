"""`python -m server <verb>`: serve, migrate, makemigrations, policies sync, clients create, keys rotate,
recipients, demo, ledger verify, ledger checkpoint, ledger repair, proof verify."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import socket
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from server.db import with_database
from server.settings import Settings, SettingsError


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == ["staff"]:  # service desk verbs: staff create | list | reminders (server/staff/cli.py)
        from server.staff.cli import main as staff_main

        return staff_main(arguments[1:])
    parser = argparse.ArgumentParser(prog="python -m server", description=__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True)
    verbs.add_parser("serve", help="run the HTTP server")
    verbs.add_parser("migrate", help="apply database migrations")
    make = verbs.add_parser("makemigrations", help="write a migration for model changes")
    make.add_argument("--name")
    policies = verbs.add_parser("policies", help="policy documents").add_subparsers(dest="action", required=True)
    policies.add_parser("sync", help="register new policy versions from POLICY_DIR")
    clients = verbs.add_parser("clients", help="API clients").add_subparsers(dest="action", required=True)
    create = clients.add_parser("create", help="create a client; prints its id and secret as JSON")
    create.add_argument("--name", required=True)
    create.add_argument("--scopes", required=True, help='space-separated, e.g. "consent:check consent:read"')
    keys = verbs.add_parser("keys", help="signing keys").add_subparsers(dest="action", required=True)
    keys.add_parser("rotate", help="add a new active signing key (old keys stay published)")
    recipients = verbs.add_parser("recipients", help="systems told of withdrawals, erasures... (GDPR 19)")
    recipient_verbs = recipients.add_subparsers(dest="action", required=True)
    recipient_add = recipient_verbs.add_parser("add", help="register a recipient's notice URL")
    recipient_add.add_argument("name")
    recipient_add.add_argument("url", help="https URL the signed notices are POSTed to")
    recipient_add.add_argument(
        "--purposes", default="", help="comma-separated purposes whose withdrawals it is told of (default: all)"
    )
    recipient_verbs.add_parser("list", help="recipients with their pending and failed notices (JSON lines)")
    recipient_disable = recipient_verbs.add_parser("disable", help="queue no more notices for a recipient")
    recipient_disable.add_argument("name")
    recipient_verbs.add_parser("retry", help="send every failed notice again")
    recipient_verbs.add_parser("deliver", help="send the notices due now, then exit")
    verbs.add_parser("demo", help="migrate, sync policies, seed demo data, print URLs and serve")
    ledger = verbs.add_parser("ledger", help="the consent ledger").add_subparsers(dest="action", required=True)
    ledger.add_parser("verify", help="recompute every hash chain, the state projection and the transparency log")
    ledger.add_parser("checkpoint", help="sequence queued events and sign a checkpoint now")
    ledger.add_parser(
        "repair", help="rewrite the state projection (and check read model) where it differs from the ledger"
    )
    record = verbs.add_parser("record", help="print the record of processing activities (GDPR 30(1))")
    record.add_argument("--format", choices=("md", "json"), default="md")
    proof = verbs.add_parser("proof", help="consent proof bundles").add_subparsers(dest="action", required=True)
    proof_verify = proof.add_parser("verify", help="check a proof bundle offline")
    proof_verify.add_argument("bundle", type=Path)
    proof_verify.add_argument("--jwks", type=Path, help="a JWKS obtained independently (default: the bundle's)")
    args = parser.parse_args(argv)
    command = f"{args.verb} {getattr(args, 'action', '')}".strip()
    if command == "proof verify":  # offline: needs no settings, no database
        return cmd_proof_verify(args)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    handler = COMMANDS[command]
    return handler(settings, args)


def _run(coro: Coroutine[Any, Any, int]) -> int:
    return asyncio.run(coro)


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from server.app import create_app
    from server.logs import configure_logging
    from server.runtime import tune_gc

    configure_logging(settings.log_level)
    app = create_app(settings)
    tune_gc()
    # No proxy headers: request.client is the socket peer, the address rate limits and (truncated) evidence use.
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        proxy_headers=False,
    )
    return 0


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from server.migrate import apply_migrations

    asyncio.run(apply_migrations(settings.database_url, quiet=False))
    print("migrations applied")
    return 0


def cmd_makemigrations(settings: Settings, args: argparse.Namespace) -> int:
    from server.migrate import make_migrations

    paths = asyncio.run(make_migrations(settings.database_url, args.name))
    print("\n".join(paths) if paths else "no changes detected")
    return 0


def cmd_policies_sync(settings: Settings, args: argparse.Namespace) -> int:
    from server.policies.documents import PolicySourceError
    from server.policies.sync import PublishedPolicyChanged, sync_policies

    async def work() -> int:
        try:
            report = await sync_policies(settings.policy_dir)
        except (PublishedPolicyChanged, PolicySourceError) as exc:
            print(f"policies sync refused: {exc}", file=sys.stderr)
            return 1
        for label in report.published:
            print(f"published {label}")
        print(f"{len(report.published)} new, {len(report.unchanged)} unchanged, {len(report.purposes)} purposes")
        return 0

    return asyncio.run(with_database(settings.database_url, work))


def cmd_clients_create(settings: Settings, args: argparse.Namespace) -> int:
    from server.auth.clients import ClientRefused, create_client

    async def work() -> int:
        try:
            client = await create_client(args.name, args.scopes)
        except ClientRefused as exc:
            print(str(exc), file=sys.stderr)
            return 2
        print(
            json.dumps(
                {
                    "client_id": client.client_id,
                    "client_secret": client.client_secret,
                    "name": client.name,
                    "scopes": client.scopes,
                }
            )
        )
        return 0

    return asyncio.run(with_database(settings.database_url, work))


def cmd_keys_rotate(settings: Settings, args: argparse.Namespace) -> int:
    from server.auth.keys import signing_keys

    store = signing_keys(settings)
    print(json.dumps({"kid": store.rotate(), "keys": len(store.jwks()["keys"])}))
    return 0


def cmd_ledger_verify(settings: Settings, args: argparse.Namespace) -> int:
    from server.auth.keys import signing_keys
    from server.ledger.verify import verify_ledger
    from server.proof.audit import audit_log

    async def work() -> int:
        report = await verify_ledger()
        for broken in report.breaks:
            print(f"BROKEN {broken}")
        verdict = "OK" if report.ok else f"FAILED ({len(report.breaks)} subject(s) broken)"
        print(f"ledger verify: {report.subjects} subjects, {report.events} events: {verdict}")
        log = await audit_log(signing_keys(settings), settings.issuer)
        for problem in log.problems:
            print(f"BROKEN {problem}")
        log_verdict = "OK" if not log.problems else f"FAILED ({len(log.problems)} problem(s))"
        print(f"transparency log: {log.entries} entries, {log.checkpoints} checkpoints: {log_verdict}")
        return 0 if report.ok and not log.problems else 1

    return asyncio.run(with_database(settings.database_url, work))


def operator_name() -> str:
    """Who runs an operator command, for the access log: the OS account and the host (`user@host`)."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (a container's arbitrary uid)
        user = f"uid {os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def cmd_ledger_repair(settings: Settings, args: argparse.Namespace) -> int:
    from server.clock import utc_now
    from server.ledger.repair import Repaired, repair_ledger
    from server.ledger.verify import Break

    def announce(outcome: Repaired | Break) -> None:
        if isinstance(outcome, Break):
            print(f"NOT REPAIRED {outcome} (the chain itself does not verify: nothing was written)", flush=True)
        else:
            print(f"REPAIRED {outcome}", flush=True)

    async def work() -> int:
        report = await repair_ledger(utc_now, operator_name(), announce=announce)
        verdict = f"{len(report.repaired)} repaired, {len(report.refused)} not repairable"
        print(f"ledger repair: {report.subjects} subjects: {verdict}")
        return 1 if report.refused else 0

    return asyncio.run(with_database(settings.database_url, work))


def cmd_ledger_checkpoint(settings: Settings, args: argparse.Namespace) -> int:
    from server.clock import utc_now
    from server.composition import build_services

    async def work() -> int:
        checkpoint = await build_services(settings, utc_now).log.checkpoint()
        print(json.dumps(checkpoint.as_json()))
        return 0

    return asyncio.run(with_database(settings.database_url, work))


def cmd_proof_verify(args: argparse.Namespace) -> int:
    from server.proof.verify_bundle import report, verify_bundle

    jwks = None
    if args.jwks is not None:
        try:
            jwks = json.loads(args.jwks.read_text())
        except (OSError, ValueError) as exc:
            print(f"--jwks {args.jwks}: {exc}", file=sys.stderr)
            return 2
    verdict = verify_bundle(args.bundle, jwks)
    print(report(verdict))
    return 0 if verdict.passed else 1


def cmd_recipients(settings: Settings, args: argparse.Namespace) -> int:
    from datetime import timedelta

    from server.auth.keys import signing_keys
    from server.clock import utc_now
    from server.errors import InvalidRequest
    from server.models import RecipientNotice
    from server.recipients import registry
    from server.recipients.dispatcher import Dispatcher, send_again

    async def work() -> int:
        now = utc_now()
        if args.action == "add":
            try:
                recipient = await registry.add(
                    args.name,
                    args.url,
                    now,
                    purposes=args.purposes.split(","),
                    allow_plain_http=settings.environment != "production",
                )
            except InvalidRequest as exc:
                print(str(exc), file=sys.stderr)
                return 2
            print(
                json.dumps(
                    {"id": recipient.id, "name": recipient.name, "url": recipient.url, "purposes": recipient.purposes}
                )
            )
        elif args.action == "list":
            for view in await registry.listing():
                print(json.dumps(view.__dict__))
        elif args.action == "disable":
            if not await registry.disable(args.name, now):
                print(f"no active recipient named {args.name!r}", file=sys.stderr)
                return 1
            print(f"disabled {args.name}")
        elif args.action == "retry":
            failed = await RecipientNotice.filter(status="failed").values_list("id", flat=True)
            print(f"{await send_again(list(failed), now)} notice(s) queued again")
        else:
            # Signed with the newest key on disk: after `keys rotate`, restart the server first, so that its JWKS
            # publishes the key the recipients will be asked to check.
            dispatcher = Dispatcher(
                signing_keys(settings),
                settings.issuer,
                utc_now,
                timeout_s=settings.recipient_timeout_s,
                retry_for=timedelta(hours=settings.recipient_retry_hours),
            )
            sent = 0
            while tried := await dispatcher.deliver_due():
                sent += tried
            print(f"{sent} notice(s) tried")
        return 0

    return asyncio.run(with_database(settings.database_url, work))


def cmd_record(settings: Settings, args: argparse.Namespace) -> int:
    from server.clock import utc_now
    from server.record.processing import RecordDeclarationError, build_record, render_markdown

    async def work() -> int:
        try:
            record = await build_record(settings.policy_dir, utc_now())
        except RecordDeclarationError as exc:
            print(exc.detail, file=sys.stderr)
            return 2
        print(json.dumps(record.as_json(), indent=2) if args.format == "json" else render_markdown(record))
        return 0

    return asyncio.run(with_database(settings.database_url, work))


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from server.demo import prepare_demo

    info = asyncio.run(prepare_demo(settings))
    print(info, flush=True)  # before uvicorn takes over: a pipe or a log file must see the URLs
    return cmd_serve(settings, args)


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "serve": cmd_serve,
    "migrate": cmd_migrate,
    "makemigrations": cmd_makemigrations,
    "policies sync": cmd_policies_sync,
    "clients create": cmd_clients_create,
    "keys rotate": cmd_keys_rotate,
    "ledger verify": cmd_ledger_verify,
    "ledger checkpoint": cmd_ledger_checkpoint,
    "ledger repair": cmd_ledger_repair,
    "recipients add": cmd_recipients,
    "recipients list": cmd_recipients,
    "recipients disable": cmd_recipients,
    "recipients retry": cmd_recipients,
    "recipients deliver": cmd_recipients,
    "demo": cmd_demo,
    "record": cmd_record,
}
