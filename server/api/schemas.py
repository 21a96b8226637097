"""Request and response bodies of the v1 API (strict: unknown fields and wrong types are refused)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from server.kernel.schemas import Code, Sha256, Strict
from server.ledger.append import CLIENT_TOUCHPOINTS
from server.ledger.transitions import ACTIONS
from server.settings import SCOPES

Text = Annotated[str, StringConstraints(max_length=1024, pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$")]
AgentId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]*$")]
ClientTouchpoint = Literal[CLIENT_TOUCHPOINTS]  # type: ignore[valid-type]
Action = Literal[ACTIONS]  # type: ignore[valid-type]


class PolicyRef(Strict):
    document: Code
    version: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._\-]{1,32}$")]
    lang: Annotated[str, StringConstraints(pattern=r"^[a-z]{2}(-[A-Z]{2})?$")]

    @property
    def label(self) -> str:
        return f"{self.document}/{self.version}/{self.lang}"


class DecisionIn(Strict):
    purpose: Code
    channel: Code
    action: Action


class EvidenceIn(Strict):
    ip: Annotated[str, StringConstraints(max_length=64)] | None = None
    user_agent: Text | None = None
    origin: Text | None = None
    gpc: bool | None = None
    reference: Text | None = Field(default=None, description="call or ticket reference, order id, ...")


class SnapshotIn(Strict):
    kind: Code
    content: Annotated[str, StringConstraints(min_length=1, max_length=256 * 1024)]
    content_type: Annotated[str, StringConstraints(max_length=64)] = "text/html; charset=utf-8"


class RecordIn(Strict):
    """Decisions to record in one transaction, all shown under one policy version."""

    policy: PolicyRef
    decisions: Annotated[list[DecisionIn], Field(min_length=1, max_length=100)]
    touchpoint: ClientTouchpoint = Field(
        default="api",
        description="where the decision was made: the client's own systems (api), its call centre (agent, with "
        "actor_id), or an import of records kept elsewhere (import); the service's own surfaces record theirs",
    )
    method: Code = "api"
    evidence: EvidenceIn | None = None
    ui_snapshot: SnapshotIn | None = None
    ui_snapshot_sha256: Sha256 | None = None
    actor_id: AgentId | None = Field(
        default=None,
        description="the client's own id of its agent, only with touchpoint agent (recorded as client_id/actor_id)",
    )


class EventOut(BaseModel):
    id: str
    seq: int
    purpose: str
    channel: str
    action: str
    status: str
    policy_version: str
    recorded_at: str
    valid_until: str | None
    prev_hash: str
    hash: str


class ConfirmationOut(BaseModel):
    event_id: str
    purpose: str
    channel: str
    mail: Literal["sent", "no_email", "suppressed", "restricted", "rate_limited", "not_sent"] = Field(
        description="the double opt-in mail for this pending grant: sent to the address on file; no address on file "
        "(set one with POST /v1/subjects/{ref}/preference-links); not sent because the address belongs to an erased "
        "person (GDPR 17), because processing is restricted (GDPR 18), or because this person was sent 5 in 15 "
        "minutes; or the mail could not be sent (the person can ask again from the preference center)"
    )


class RecordOut(BaseModel):
    subject: str
    events: list[EventOut]
    receipt: str | None
    confirmations: list[ConfirmationOut] = Field(
        description="one per purpose x channel left pending_confirmation (double opt-in) by this request: it counts "
        "as consent once the person clicks the link in the mail"
    )


class ConsentOut(BaseModel):
    purpose: str
    channel: str
    allowed: bool
    reason: str
    status: str
    since: str | None
    valid_until: str | None
    policy_version: str | None
    event_id: str | None


class MatrixOut(BaseModel):
    subject: str
    at: str
    consents: list[ConsentOut]


class LedgerEventOut(BaseModel):
    """An event as hashed: recompute `hash` as SHA-256 of the RFC 8785 form of every field but `hash`."""

    id: str
    subject: str
    seq: int
    purpose: str
    channel: str
    action: str
    status: str
    policy: dict[str, str]
    touchpoint: str
    method: str
    actor: dict[str, str | None]
    ui_snapshot: str | None
    evidence: dict[str, object]
    recorded_at: str
    valid_until: str | None
    prev_hash: str
    hash: str


class EventsOut(BaseModel):
    subject: str
    events: list[LedgerEventOut]
    next_cursor: str | None


class PolicyOut(BaseModel):
    document: str
    version: str
    lang: str
    title: str
    sha256: str
    effective_at: str
    material: bool
    purposes: list[str]
    summary: str
    url: str


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int
    scope: str


class CheckOut(BaseModel):
    allowed: bool
    reason: str
    status: str
    since: str | None
    valid_until: str | None
    policy_version: str | None
    event_id: str | None


class CheckIn(Strict):
    subject: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    purpose: Code
    channel: Code


class BatchIn(Strict):
    checks: Annotated[list[CheckIn], Field(max_length=10_000)]


class BatchResult(CheckOut):
    subject: str
    purpose: str
    channel: str


class BatchOut(BaseModel):
    results: list[BatchResult]


Scope = Literal[SCOPES]  # type: ignore[valid-type]


class ClientOut(BaseModel):
    client_id: str
    name: str
    scopes: list[str]
    created_at: str | None
    revoked_at: str | None
    secret_rotated_at: str | None
    previous_secret_valid_until: str | None
    token_generation: int


class ClientsOut(BaseModel):
    clients: list[ClientOut]


class RotateIn(Strict):
    revoke_tokens: bool = False


class RotatedOut(ClientOut):
    client_secret: str


class ScopesIn(Strict):
    scopes: Annotated[list[Scope], Field(min_length=1, max_length=len(SCOPES))]
