"""Staff roles and what each may do: least privilege, role-scoped access to personal data (GDPR 25 and 32).

    permission            agent  supervisor  auditor  admin   what
    console                 x        x          x       x     the console shell, sign-out, approved answers
    customer.view           x        x          x       x     search, consent matrix, timeline, UI snapshots
    consent.record          x        x                        record a decision on the customer's behalf
    link.send               x        x                        mail the customer a preference-center link
    notice.resend           x        x                        send again a notice a recipient never acknowledged
    request.view            x        x          x       x     the request queue and a request's history
    request.open            x        x                        open a request for a customer
    request.handle          x        x                        work on a request (agents: their own, and only
                                                              access, portability, rectification, objection)
    request.assign                   x                        reassign a request to someone
    request.extend                   x                        extend a deadline (with a reason sent to the customer)
    request.sensitive                x                        erasure and restriction (and lifting a restriction)
    proof.download                   x          x       x     a subject's proof bundle
    breach.view                      x          x       x     the breach register, a breach's notification content
    breach.manage                    x                        record a breach, its assessment, notification, closing
    record.view                      x          x       x     the record of processing activities (GDPR 30)
    audit.view                                  x       x     the access log of every staff and client action
    ledger.export                                       x     the whole ledger as NDJSON
    staff.manage                                        x     create accounts, change roles, disable accounts

Auditors read, never change. Admins run the console (accounts, audit, ledger export, proofs) but neither record
consent nor handle requests: whoever creates accounts does not also act on customers, and every admin action is in
the access log like any other.
"""

from __future__ import annotations

ROLES = ("agent", "supervisor", "auditor", "admin")

PERMISSIONS: dict[str, frozenset[str]] = {
    "console": frozenset(ROLES),
    "customer.view": frozenset(ROLES),
    "consent.record": frozenset({"agent", "supervisor"}),
    "link.send": frozenset({"agent", "supervisor"}),
    "notice.resend": frozenset({"agent", "supervisor"}),
    "request.view": frozenset(ROLES),
    "request.open": frozenset({"agent", "supervisor"}),
    "request.handle": frozenset({"agent", "supervisor"}),
    "request.assign": frozenset({"supervisor"}),
    "request.extend": frozenset({"supervisor"}),
    "request.sensitive": frozenset({"supervisor"}),
    "proof.download": frozenset({"supervisor", "auditor", "admin"}),
    "breach.view": frozenset({"supervisor", "auditor", "admin"}),
    "breach.manage": frozenset({"supervisor"}),
    "record.view": frozenset({"supervisor", "auditor", "admin"}),
    "audit.view": frozenset({"auditor", "admin"}),
    "ledger.export": frozenset({"admin"}),
    "staff.manage": frozenset({"admin"}),
}

# Request kinds an agent may handle when the request is assigned to them; the others need `request.sensitive`.
AGENT_KINDS = frozenset({"access", "portability", "rectification", "objection"})


def can(role: str | None, permission: str) -> bool:
    if permission not in PERMISSIONS:
        raise KeyError(f"unknown permission {permission!r}")
    return role is not None and role in PERMISSIONS[permission]


def may_handle(role: str, staff_id: int, kind: str, owner_id: int | None) -> bool:
    """Whether `role` may work on a request of `kind` owned by `owner_id` (object-level check)."""
    if can(role, "request.sensitive"):
        return can(role, "request.handle")
    return can(role, "request.handle") and kind in AGENT_KINDS and owner_id == staff_id


def may_take(role: str, kind: str, owner_id: int | None) -> bool:
    """Whether `role` may assign an unowned request of `kind` to themself."""
    if owner_id is not None:
        return False
    if can(role, "request.sensitive"):
        return True
    return can(role, "request.handle") and kind in AGENT_KINDS
