"""The policy documents' verb: `policies sync` registers new versions from `POLICY_DIR` (`policy_docs/`)."""

from __future__ import annotations

import argparse
import sys

from server.settings import Settings
from server.verbs import Group, Verb, in_database


def policies_sync(settings: Settings, args: argparse.Namespace) -> int:
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

    return in_database(settings, work)


VERBS: list[Group | Verb] = [
    Group("policies", "policy documents"),
    Verb(("policies", "sync"), "register new policy versions from POLICY_DIR", run=policies_sync),
]
