"""The consent matrix of a subject: every purpose x channel the catalogue offers, each decided by the one rule.

The console, the API's `GET /v1/subjects/{ref}/consents`, the preference center and the proof bundle all read a
subject's states here (`projected_states`, or a replay of the ledger) and decide them with `decide_all`."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from server.consent.decide import Answer, StateView, SubjectFlags, decide
from server.models import ConsentState
from server.policies.snapshot import CatalogSnapshot

States = dict[tuple[str, str], StateView]


class Cell(NamedTuple):
    purpose: str
    channel: str
    answer: Answer

    def as_json(self) -> dict[str, Any]:
        """The cell as the API and the proof bundle give it (instants left to the caller's serialiser)."""
        return {"purpose": self.purpose, "channel": self.channel, **self.answer._asdict()}


async def projected_states(subject_id: Any) -> States:
    """The subject's current states from the projection (`consent_states`), written with each event."""
    rows = await ConsentState.filter(subject_id=subject_id).values(
        "purpose_id", "channel_id", "status", "since", "valid_until", "policy_version_id", "event_id"
    )
    return {
        (r["purpose_id"], r["channel_id"]): StateView(
            r["status"], r["since"], r["valid_until"], r["policy_version_id"], str(r["event_id"])
        )
        for r in rows
    }


def decide_all(
    catalog: CatalogSnapshot,
    flags: SubjectFlags | None,
    states: States,
    at: datetime,
    *,
    purpose: str | None = None,
    channel: str | None = None,
) -> list[Cell]:
    """Every offered purpose x channel (or those of `purpose`, `channel`), in code order, decided at `at`."""
    cells = []
    for code, info in sorted(catalog.purposes.items()):
        if purpose is not None and code != purpose:
            continue
        for offered in sorted(info.channels):
            if channel is not None and offered != channel:
                continue
            cells.append(Cell(code, offered, decide(catalog, flags, states.get((code, offered)), code, offered, at)))
    return cells
