"""Bodies of the preference center's API endpoints (strict, like `server.api.schemas`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, StringConstraints

from server.kernel.schemas import Code, Strict

Email = Annotated[
    str,
    StringConstraints(min_length=3, max_length=320, pattern=r"^[^\s@\x00-\x1f]+@[^\s@\x00-\x1f]+\.[^\s@\x00-\x1f]+$"),
]
Lang = Literal["fr", "en"]


class PreferenceLinkIn(Strict):
    """Optional contact data to keep on the subject row (not in the ledger): where confirmation mails go, and
    which language the preference center speaks."""

    email: Email | None = None
    locale: Lang | None = None


class PreferenceLinkOut(BaseModel):
    url: str
    token: str
    expires_at: str


class UnsubscribeLinkIn(Strict):
    purpose: Code
    channel: Code
    lang: Lang | None = None


class UnsubscribeLinkOut(BaseModel):
    url: str
    headers: dict[str, str]
    expires_at: str
