"""Turning one banner choice into ledger decisions: one `Ledger.record` call, one transaction, one signed receipt.

Every web purpose of every offered category is decided (ePrivacy / CNIL: a refusal is recorded like a consent):
`grant` for the accepted categories, `deny` for the refused ones, or `withdraw` when the current status is a grant
(`deny` is not a transition from `granted`). The necessary category is exempt from consent and recorded nothing.
A GPC record decides the marketing purposes only: the signal says nothing about the other categories.

Under GPC (the `Sec-GPC: 1` header or the page's `navigator.globalPrivacyControl`), marketing is granted only by the
visitor's own switch for it (method `save`): an "accept all" that lists marketing is recorded without it, as a
refusal, whatever the browser sent. The signal is a valid opt-out of sale, sharing and targeted advertising, to be
honoured over a general setting (CCPA regulations, 11 CCR § 7025(c)(1) and (c)(3)); consent after it must be a
specific, affirmative choice (Colorado Privacy Act Rules, 4 CCR 904-3, Rule 5.09 with Rule 7.05), which a bundled
"accept all" is not. Recording the rest of the choice keeps what the visitor did choose (a refusal would lose it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from server.banner.config import DOCUMENT, NECESSARY, WEB, SiteConfig, shown_text
from server.banner.errors import BannerTextMismatch
from server.banner.schemas import CookieConsentIn
from server.banner.sites import Site
from server.db import connection, placeholders
from server.errors import InvalidRequest, UnknownPolicyVersion
from server.ledger.append import Decision, RecordRequest, RecordResult, Snapshot

if TYPE_CHECKING:
    from server.banner.service import BannerService
    from server.services import Services

MARKETING = "marketing"
# Statuses a refusal ends with `withdraw` (GDPR 7(3)); from `objected` nothing is recorded: it already refuses more.
_WITHDRAW_FROM = frozenset({"granted", "soft_opt_in", "pending_confirmation"})
_SKIP_FROM = frozenset({"objected"})


@dataclass(frozen=True)
class Evidence:
    ip: str | None
    user_agent: str | None
    origin: str
    gpc_header: bool


@dataclass(frozen=True)
class Recorded:
    result: RecordResult
    policy: str
    snapshot: str
    touchpoint: str
    receipt: str


async def record_choice(
    services: Services,
    banner: BannerService,
    site: Site,
    config: SiteConfig,
    choice: CookieConsentIn,
    evidence: Evidence,
) -> Recorded:
    gpc = choice.gpc or evidence.gpc_header
    accepted = _accepted(config, choice, gpc)
    label = f"{DOCUMENT}/{choice.policy_version}/{choice.lang}"
    if choice.lang not in site.languages:
        raise InvalidRequest(f"lang {choice.lang!r} is not a language of site {site.id!r}", parameter="lang")
    catalog = await services.catalog.get()
    if label not in catalog.policies:
        catalog = await services.catalog.reload()
    policy = catalog.policies.get(label)
    if policy is None:
        raise UnknownPolicyVersion(f"policy version {label!r} is not published", policy_version=label)
    shown = shown_text(
        site, catalog, config.categories, banner.tree.texts[choice.lang], policy, services.settings.issuer
    )
    if shown.sha256 != choice.text_sha256:
        raise BannerTextMismatch(
            f"the banner text hash {choice.text_sha256} is not the hash of the text served for site {site.id!r}, "
            f"{label} ({shown.sha256})",
            expected=shown.sha256,
        )
    touchpoint = "gpc" if choice.method == "gpc" else "banner"
    states = await _web_states(choice.consent_id)
    decisions: list[Decision] = []
    for category, purposes in config.categories.items():
        if category == NECESSARY or (choice.method == "gpc" and category != MARKETING):
            continue
        for purpose in purposes:
            action = _action(category in accepted, states.get(purpose.code))
            if action is not None:
                decisions.append(Decision(purpose.code, WEB, action))
    result = await services.ledger.record(
        RecordRequest(
            ref=choice.consent_id,
            policy=label,
            decisions=decisions,
            touchpoint=touchpoint,
            method=choice.method,
            actor_type="subject",
            actor_id=None,
            evidence={
                "ip": evidence.ip,
                "user_agent": evidence.user_agent,
                "origin": evidence.origin,
                "gpc": gpc,
            },
            snapshot=Snapshot("banner", shown.canonical, "application/json"),
            receipt_claims={"consent_id": choice.consent_id, "site": site.id},
        )
    )
    # The call's one receipt: stored with the events, in the visitor's proof bundle, and handed to the browser.
    assert result.receipt is not None, "the ledger signs a receipt for every record call"
    return Recorded(result, label, shown.sha256, touchpoint, result.receipt)


def _accepted(config: SiteConfig, choice: CookieConsentIn, gpc: bool) -> set[str]:
    """The accepted categories, checked against what the method means."""
    offered = set(config.categories) - {NECESSARY}
    accepted = {str(c) for c in choice.categories} - {NECESSARY}
    unknown = accepted - offered
    if unknown:
        raise InvalidRequest(f"categories {sorted(unknown)} are not offered by site {config.site.id!r}")
    if choice.method in {"reject_all", "dismiss", "gpc"} and accepted:
        # CNIL 2020-092: closing the banner is a refusal; GPC is an opt-out signal, never an acceptance.
        raise InvalidRequest(f"method {choice.method!r} accepts no category, got {sorted(accepted)}")
    if choice.method == "gpc" and not gpc:
        raise InvalidRequest("method 'gpc' needs the Global Privacy Control signal (Sec-GPC: 1 or gpc: true)")
    if choice.method == "accept_all":
        # With GPC, "accept all" leaves marketing off; only the marketing switch itself turns it on.
        expected = offered - {MARKETING} if gpc else offered
        if not expected <= accepted:
            raise InvalidRequest(f"method 'accept_all' must accept {sorted(expected)}, got {sorted(accepted)}")
    if gpc and choice.method != "save":
        # 11 CCR § 7025(c)(3), 4 CCR 904-3 Rule 5.09: the signal prevails over anything but the marketing switch.
        accepted.discard(MARKETING)
    return accepted


def _action(accepted: bool, status: str | None) -> str | None:
    if accepted:
        return "grant"
    if status in _SKIP_FROM:
        return None
    return "withdraw" if status in _WITHDRAW_FROM else "deny"


async def _web_states(ref: str) -> dict[str, str]:
    """Current status per web purpose, to end a grant with `withdraw` and anything else with `deny`.

    Read outside the ledger's transaction: a concurrent choice for the same id that changes a status in between
    makes the ledger refuse the transition (422), never record a wrong one. One query joining the subject by its
    ref (a new visitor, the usual case, finds no row).
    """
    conn = connection()
    ref_mark, channel_mark = placeholders(conn, 2)
    rows = await conn.execute_query_dict(
        "SELECT c.purpose_id, c.status FROM subjects s JOIN consent_states c ON c.subject_id = s.id "
        f"WHERE s.ref = {ref_mark} AND c.channel_id = {channel_mark}",
        [ref, WEB],
    )
    return {str(r["purpose_id"]): str(r["status"]) for r in rows}
