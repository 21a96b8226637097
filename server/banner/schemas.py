"""Bodies of the banner's record endpoint (strict: unknown fields and wrong types are refused)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from server.kernel.schemas import Code, Sha256, Strict

CONSENT_ID = r"^ck_[A-Za-z0-9_\-]{22}$"  # "ck_" + 22 url-safe characters from crypto.getRandomValues (132 bits)
CHOICE_ID = r"^[A-Za-z0-9_\-]{8,32}$"
METHODS = ("accept_all", "reject_all", "save", "gpc", "dismiss")
Category = Literal["necessary", "preferences", "analytics", "marketing"]
Method = Literal[METHODS]  # type: ignore[valid-type]


class CookieConsentIn(Strict):
    """One choice made in the banner: the accepted categories (every other offered category is refused)."""

    site: Code
    consent_id: Annotated[str, StringConstraints(pattern=CONSENT_ID)]
    categories: Annotated[list[Category], Field(max_length=4)]
    method: Method
    policy_version: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._\-]{1,32}$")]
    lang: Annotated[str, StringConstraints(pattern=r"^[a-z]{2}$")]
    text_sha256: Sha256 = Field(description="SHA-256 of the banner text shown (JSON.stringify of config.texts[lang])")
    gpc: bool = False
    choice_id: Annotated[str | None, StringConstraints(pattern=CHOICE_ID)] = Field(
        default=None,
        description="The banner's id of this choice: sent again with the same id until recorded, recorded once",
    )


class RecordedDecision(BaseModel):
    id: str
    purpose: str
    channel: str
    action: str
    status: str
    hash: str


class CookieConsentOut(BaseModel):
    consent_id: str
    policy_version: str
    ui_snapshot: str
    touchpoint: str
    events: list[RecordedDecision]
    receipt: str = Field(description="compact JWS (ES256) over the consent id, event ids and hashes; kid in JWKS")
