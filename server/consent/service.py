"""`CheckService`: every way of asking the consent check (single, batch, stream, audience feed), one rule for all.

The HTTP handlers (`server.api.checks`) only read requests and write responses; what is answered, and how the
work is spread over the reader's threads, PostgreSQL and the stream worker processes, is decided here.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable
from datetime import datetime
from typing import Any

import orjson

from server.consent.audience import export_allowed, export_changes
from server.consent.bulk import BulkRule, numbered_keys, problem, stream_body
from server.consent.check import MAX_BATCH, Question
from server.consent.decide import Answer, decide
from server.consent.reader import Key, StateReader
from server.consent.stream_workers import Segment, StreamWorkers
from server.errors import ConsentError, PayloadTooLarge
from server.policies.catalog import Catalog
from server.policies.snapshot import CatalogSnapshot
from server.visibility import FEED_OVERLAP

STREAM_CHUNK = 1000  # lines answered together: one read of the state, one write of answers
# Chunks of one stream answered at once without worker processes (STREAM_WORKERS=0); with workers, two a worker, at
# most MAX_IN_FLIGHT. In process on PostgreSQL, 4 answers more checks/s than 2 or 6 (bench/README.md, "Chunks of a
# stream in flight").
IN_FLIGHT = 4
MAX_IN_FLIGHT = 8  # chunks of one stream answered at once with worker processes, whatever their number


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
        """One answer, now or as of `at` (read from the ledger)."""
        catalog = catalog or await self.catalog.get()
        key: Key = (question.subject, question.purpose, question.channel)
        if at is None:
            now = self.clock()
            (lookup,) = await self.reader.current([key])
            return decide(catalog, lookup.subject, lookup.state, question.purpose, question.channel, now)
        lookup = await self.reader.at(key, at)
        return decide(catalog, lookup.subject, lookup.state, question.purpose, question.channel, at)

    async def batch(self, items: list[Any]) -> bytes:
        """The JSON `{"results": [...]}` answering up to MAX_BATCH checks in order; a malformed item gets its error
        in place (with the subject, purpose and channel it gave), the others are answered as single checks are."""
        if len(items) > MAX_BATCH:
            raise PayloadTooLarge(f"{len(items)} checks in one batch; the limit is {MAX_BATCH}", limit=MAX_BATCH)
        rule = BulkRule(await self.catalog.get(), self.clock())
        questions = [rule.question(item) for item in items]
        answers = iter(await rule.answers(self.reader, [q for q in questions if type(q) is tuple], None))
        results = []
        for item, question in zip(items, questions, strict=True):
            if type(question) is tuple:
                results.append(next(answers))
            else:
                assert isinstance(question, ConsentError)
                echo = {k: item.get(k) for k in ("subject", "purpose", "channel")} if isinstance(item, dict) else {}
                results.append(orjson.dumps({**echo, "error": problem(question)}).decode())
        return f'{{"results":[{",".join(results)}]}}'.encode()

    async def stream(self, segments: AsyncIterable[Segment]) -> AsyncIterator[bytes]:
        """NDJSON answering the lines of `segments` in order, in constant memory.

        Pipelined: up to `limit` chunks are answered (by the worker processes, or in process: on the reader's bulk
        threads on SQLite, by the database on PostgreSQL while Python goes on) while the next ones are read and the
        previous ones written; at most `limit` + 1 chunks are held."""
        catalog = await self.catalog.get()
        workers = self.stream_workers
        limit = min(max(2, 2 * workers.workers), MAX_IN_FLIGHT) if workers is not None else IN_FLIGHT
        in_flight: deque[asyncio.Future[bytes]] = deque()
        chunk: list[Segment] = []
        lines = 0
        try:
            async for segment in segments:
                chunk.append(segment)
                lines += segment[2]
                if lines >= STREAM_CHUNK:
                    in_flight.append(asyncio.ensure_future(self._chunk_body(catalog, chunk)))
                    if len(in_flight) > limit:
                        yield await in_flight.popleft()
                    chunk, lines = [], 0
            if chunk:
                in_flight.append(asyncio.ensure_future(self._chunk_body(catalog, chunk)))
            while in_flight:
                yield await in_flight.popleft()
        finally:  # a client gone or a chunk failed: nothing answered for nobody, no exception left unretrieved
            for pending in in_flight:
                pending.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)

    async def _chunk_body(self, catalog: CatalogSnapshot, segments: list[Segment]) -> bytes:
        """The NDJSON answering one chunk of stream lines, decided now: in a worker process when there are some,
        else here (parsed on the event loop, read on the reader's bulk threads or by PostgreSQL)."""
        now = self.clock()
        if self.stream_workers is not None:
            body = await self.stream_workers.answer(catalog, now, segments)
            if body is not None:
                return body
        rule = BulkRule(catalog, now)
        numbers: list[int] = []
        items: list[Key | ConsentError] = []
        for first, block, count in segments:
            rule.parse(first, block, count, numbers, items)
        keys, key_numbers = numbered_keys(numbers, items)
        return stream_body(await rule.answers(self.reader, keys, key_numbers), numbers, items)

    def audience(
        self, catalog: CatalogSnapshot, question: Question, since: datetime | None
    ) -> tuple[AsyncIterator[bytes], datetime]:
        """NDJSON of every subject allowed for the question's purpose x channel, or with `since` the answers that
        may have changed after it; and the `since` of the next poll (not now: a change whose instant precedes now
        may still commit after this read, `server.visibility`)."""
        now = self.clock()
        purpose = catalog.purposes[question.purpose]
        if since is None:
            body = export_allowed(self.reader, catalog, purpose, question.channel, now)
        else:
            body = export_changes(self.reader, catalog, purpose, question.channel, since, now)
        return body, now - FEED_OVERLAP
