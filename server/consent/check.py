"""The consent check: validate the question, read the state, apply the decision rule."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from server.consent.decide import Answer, decide
from server.consent.reader import Key, StateReader
from server.errors import ChannelNotOffered, ConsentError, InvalidRequest, UnknownChannel, UnknownPurpose
from server.policies.snapshot import CatalogSnapshot

if TYPE_CHECKING:  # the stream worker processes import this module without the ORM that the catalog loads from
    from server.consent.stream_workers import StreamWorkers
    from server.policies.catalog import Catalog

MAX_BATCH = 10_000
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


class Question(NamedTuple):
    subject: str
    purpose: str
    channel: str


def validate_question(catalog: CatalogSnapshot, subject: Any, purpose: Any, channel: Any) -> Question:
    """A well-formed question about a known purpose offered on a known channel, or a domain error."""
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


class CheckService:
    def __init__(
        self,
        catalog: Catalog,
        reader: StateReader,
        clock: Callable[[], datetime],
        stream_workers: StreamWorkers | None = None,
    ) -> None:
        self.catalog = catalog
        self.reader = reader
        self.clock = clock
        self.stream_workers = stream_workers  # stream chunks answered in worker processes (STREAM_WORKERS), or None

    async def check(
        self, question: Question, at: datetime | None = None, catalog: CatalogSnapshot | None = None
    ) -> Answer:
        catalog = catalog or await self.catalog.get()
        key: Key = (question.subject, question.purpose, question.channel)
        if at is None:
            now = self.clock()
            (lookup,) = await self.reader.current([key])
            return decide(catalog, lookup.subject, lookup.state, question.purpose, question.channel, now)
        lookup = await self.reader.at(key, at)
        return decide(catalog, lookup.subject, lookup.state, question.purpose, question.channel, at)

    async def check_many(self, items: Sequence[Question | ConsentError]) -> list[Answer | ConsentError]:
        """Answers in the order of `items`; an item that is already an error stays in place."""
        catalog = await self.catalog.get()
        now = self.clock()
        questions = [item for item in items if isinstance(item, Question)]
        lookups = iter(await self.reader.current([(q.subject, q.purpose, q.channel) for q in questions]))
        answers: list[Answer | ConsentError] = []
        for item in items:
            if isinstance(item, ConsentError):
                answers.append(item)
                continue
            lookup = next(lookups)
            answers.append(decide(catalog, lookup.subject, lookup.state, item.purpose, item.channel, now))
        return answers
