"""A consent question: its shape, and its validation against the catalogue (the rule every check path applies).

Imported by the stream worker processes, which load no ORM."""

from __future__ import annotations

import re
import unicodedata
from typing import Any, NamedTuple

from server.errors import ChannelNotOffered, InvalidRequest, UnknownChannel, UnknownPurpose
from server.policies.snapshot import CatalogSnapshot

MAX_BATCH = 10_000
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


class Question(NamedTuple):
    subject: str
    purpose: str
    channel: str


def validate_question(catalog: CatalogSnapshot, subject: Any, purpose: Any, channel: Any) -> Question:
    """A well-formed question about a known purpose offered on a known channel, or a domain error. The subject is
    compared in NFC, as refs are stored (`server.kernel.params.subject_ref`)."""
    if isinstance(subject, str) and not subject.isascii():
        subject = unicodedata.normalize("NFC", subject)
    if not isinstance(subject, str) or not 0 < len(subject) <= 255 or CONTROL_CHARACTERS.search(subject):
        raise InvalidRequest("subject must be a string of 1-255 characters without control characters")
    if not isinstance(purpose, str) or purpose not in catalog.purposes:
        raise UnknownPurpose(f"unknown purpose {purpose!r}", purpose=str(purpose)[:64])
    if not isinstance(channel, str) or channel not in catalog.channels:
        raise UnknownChannel(f"unknown channel {channel!r}", channel=str(channel)[:64])
    if channel not in catalog.purposes[purpose].channels:
        raise ChannelNotOffered(
            f"purpose {purpose!r} is not offered on channel {channel!r}", purpose=purpose, channel=channel
        )
    return Question(subject, purpose, channel)
