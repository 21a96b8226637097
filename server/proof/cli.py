"""The verbs of the ledger's integrity and its proofs: `ledger verify | checkpoint | repair`, `proof verify`.

The ledger's verbs are here, not in `server.ledger`, because the ledger sits below the proof layer: `ledger verify`
also audits the transparency log (`server.proof.audit`) and `ledger checkpoint` signs it (`server.proof.log`), which
`server.ledger` may not import. `server.proof` is the lowest package that can import both.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from server.settings import Settings
from server.verbs import Group, Verb, in_database, operator_name


def ledger_verify(settings: Settings, args: argparse.Namespace) -> int:
    from server.auth.keys import signing_keys
    from server.ledger.verify import verify_ledger
    from server.proof.audit import audit_log
    from server.proof.log import read_identity

    async def work() -> int:
        report = await verify_ledger()
        for broken in report.breaks:
            print(f"BROKEN {broken}")
        verdict = "OK" if report.ok else f"FAILED ({len(report.breaks)} subject(s) broken)"
        print(f"ledger verify: {report.subjects} subjects, {report.events} events: {verdict}")
        identity = await read_identity(settings.issuer)  # the stored id, whatever PUBLIC_URL is now
        log = await audit_log(signing_keys(settings), identity.log_id, identity.adopted_at)
        for problem in log.problems:
            print(f"BROKEN {problem}")
        for note in log.notes:
            print(f"NOTE {note}")
        log_verdict = "OK" if not log.problems else f"FAILED ({len(log.problems)} problem(s))"
        print(f"transparency log id: {identity.log_id}")
        print(f"transparency log: {log.entries} entries, {log.checkpoints} checkpoints: {log_verdict}")
        return 0 if report.ok and not log.problems else 1

    return in_database(settings, work)


def ledger_checkpoint(settings: Settings, args: argparse.Namespace) -> int:
    from server.auth.keys import signing_keys
    from server.clock import utc_now
    from server.proof.log import TransparencyLog

    async def work() -> int:
        log = TransparencyLog(signing_keys(settings), settings.issuer, utc_now)
        print(json.dumps((await log.checkpoint()).as_json()))
        return 0

    return in_database(settings, work)


def ledger_repair(settings: Settings, args: argparse.Namespace) -> int:
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

    return in_database(settings, work)


def _bundle_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--jwks", type=Path, help="a JWKS obtained independently (default: the bundle's)")


def proof_verify(args: argparse.Namespace) -> int:
    """Offline: a bundle and, optionally, a key set; no settings, no database."""
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


VERBS: list[Group | Verb] = [
    Group("ledger", "the consent ledger"),
    Verb(
        ("ledger", "verify"),
        "recompute every hash chain, the state projection and the transparency log",
        run=ledger_verify,
    ),
    Verb(("ledger", "checkpoint"), "sequence queued events and sign a checkpoint now", run=ledger_checkpoint),
    Verb(
        ("ledger", "repair"),
        "rewrite the state projection (and check read model) where it differs from the ledger",
        run=ledger_repair,
    ),
    Group("proof", "consent proof bundles"),
    Verb(("proof", "verify"), "check a proof bundle offline", offline=proof_verify, arguments=_bundle_arguments),
]
