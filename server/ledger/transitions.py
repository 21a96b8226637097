"""Which decision is allowed from which status, and the status it leads to.

Statuses (DPV ConsentStatus in brackets): `granted` (Given), `pending_confirmation` (RequestDeferred, double
opt-in), `refused` (Refused), `withdrawn` (Withdrawn), `expired` (Expired), `objected` (GDPR 21 objection),
`soft_opt_in` (existing-customer exemption, basis recorded). No row at all means no record.
"""

from __future__ import annotations

from server.errors import InvalidTransition, UnprocessableDecision
from server.policies.snapshot import PurposeInfo

ACTIONS = ("grant", "deny", "withdraw", "confirm", "object", "expire", "soft_opt_in")
STATUSES = ("granted", "pending_confirmation", "refused", "withdrawn", "expired", "objected", "soft_opt_in")

# Allowed starting statuses per action; None stands for "no record yet".
_FROM: dict[str, frozenset[str | None]] = {
    # GDPR 4(11): a grant is a new affirmative act, possible from any status (even after an objection).
    "grant": frozenset({None, *STATUSES}),
    "deny": frozenset({None, "refused", "withdrawn", "expired", "pending_confirmation"}),
    "withdraw": frozenset({"granted", "pending_confirmation", "soft_opt_in", "expired"}),
    "confirm": frozenset({"pending_confirmation"}),
    "object": frozenset({None, "granted", "pending_confirmation", "refused", "withdrawn", "expired", "soft_opt_in"}),
    "expire": frozenset({"granted", "soft_opt_in"}),
    # Soft opt-in never overrides a refusal, withdrawal or objection (no silent switch of legal basis).
    "soft_opt_in": frozenset({None, "expired"}),
}

_HINT = {
    "deny": "a current grant is ended with 'withdraw'",
    "withdraw": "there is no grant to withdraw",
    "confirm": "only a pending double opt-in can be confirmed",
    "object": "an objection is already recorded",
    "expire": "only a grant can expire",
    "soft_opt_in": "soft opt-in cannot override an earlier refusal, withdrawal or objection",
}


def next_status(action: str, current: str | None, purpose: PurposeInfo, channel: str) -> str:
    """The status `action` leads to from `current`, or a domain error saying why it is refused."""
    if action not in _FROM:
        raise UnprocessableDecision(f"unknown action {action!r}; use one of {', '.join(ACTIONS)}")
    if current not in _FROM[action]:
        raise InvalidTransition(
            f"'{action}' is not allowed for {purpose.code}/{channel} from status "
            f"{current or 'no_record'}: {_HINT.get(action, 'not allowed')}",
            purpose=purpose.code,
            channel=channel,
            current_status=current or "no_record",
        )
    if action == "grant":
        # Double opt-in: an email grant waits for the click on the confirmation link.
        if purpose.double_opt_in and channel == "email" and current != "granted":
            return "pending_confirmation"
        return "granted"
    if action == "soft_opt_in":
        # CNIL / L.34-5 CPCE: only for the company's own similar products, by email or SMS, after a sale.
        if not purpose.marketing or purpose.third_parties or channel not in {"email", "sms"}:
            raise InvalidTransition(
                "soft opt-in applies only to the company's own marketing by email or SMS, "
                f"not {purpose.code}/{channel}",
                purpose=purpose.code,
                channel=channel,
                current_status=current or "no_record",
            )
        return "soft_opt_in"
    return {
        "deny": "refused",
        "withdraw": "withdrawn",
        "confirm": "granted",
        "object": "objected",
        "expire": "expired",
    }[action]


def keeps_validity(status: str) -> bool:
    """Statuses whose `valid_until` is computed from the purpose's validity."""
    return status in {"granted", "soft_opt_in"}
