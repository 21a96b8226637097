"""Which ledger decisions a click means. No HTTP here.

Every write goes through `Ledger.record` (or `OptIn.record`, which mails the double opt-in) with the policy version
shown and the exact fragment shown (proof of display, GDPR 7(1), EDPB 05/2020 104-106).
"""

from __future__ import annotations

from collections.abc import Sequence

from preference_center.view import ON_STATUSES, Control, Row
from server.ledger.append import Decision


def toggle_decision(control: Control, value: str) -> Decision | None:
    """The decision for setting `control` to `value` (on/off/object/unobject), or None if nothing changes.

    A repeated or stale click (the switch already in that position) records nothing, so a double submit or a
    reloaded form never writes twice.
    """
    status, reason = control.answer.status, control.answer.reason
    if control.kind == "switch":
        if value == "on" and reason not in ON_STATUSES:
            return Decision(control.purpose, control.channel, "grant")
        if value == "off":
            if status in ON_STATUSES:
                return Decision(control.purpose, control.channel, "withdraw")
            if status in ("no_record", "expired"):
                return Decision(control.purpose, control.channel, "deny")  # a refusal is stored like consent
        return None
    if control.kind == "object":
        if value == "object" and reason != "objected":
            return Decision(control.purpose, control.channel, "object")  # GDPR 21(3)
        if value == "unobject" and reason == "objected":
            return Decision(control.purpose, control.channel, "grant")
    return None


def unsubscribe_all_decisions(rows: Sequence[Row]) -> list[Decision]:
    """GDPR 7(3) and 21(3): every marketing consent withdrawn, every marketing channel we send on legitimate
    interest objected to, in one decision set (one transaction, one click)."""
    decisions = []
    for row in rows:
        if not row.purpose.marketing:
            continue
        for control in row.controls:
            if control.kind == "switch" and control.answer.status in ON_STATUSES:
                decisions.append(Decision(control.purpose, control.channel, "withdraw"))
            elif control.kind == "object" and control.answer.reason != "objected":
                decisions.append(Decision(control.purpose, control.channel, "object"))
    return decisions
