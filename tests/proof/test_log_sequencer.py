"""The sequencer while events are being recorded: every event gets exactly one position, positions are gapless, the
queue ends empty, and the root is the RFC 6962 root of the event hashes in position order."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tortoise import Tortoise, connections

import server.proof.log
from server.auth.keys import KeyStore
from server.db import placeholders, tortoise_config
from server.ledger.append import Decision, Ledger, RecordRequest
from server.policies.catalog import Catalog
from server.proof.log import TransparencyLog
from tests import independent
from tests.databases import forget_cached_sql, run_sync


@contextlib.asynccontextmanager
async def _ledger_and_log(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[Ledger, TransparencyLog]]:
    forget_cached_sql()
    await Tortoise.init(config=tortoise_config(database_url))
    try:
        ledger = Ledger("k" * 40, Catalog(5.0), lambda: datetime.now(UTC))
        yield ledger, TransparencyLog(KeyStore(tmp_path / "keys"), "test-log", lambda: datetime.now(UTC))
    finally:
        await Tortoise.close_connections()


def _grant(ref: str, *channels: str) -> RecordRequest:
    return RecordRequest(
        ref=ref,
        policy="privacy-policy/2/fr",
        decisions=[Decision("offers", channel, "grant") for channel in channels],
        touchpoint="api",
        method="api",
        actor_type="client",
        actor_id="test",
    )


def test_sequencing_while_recording_gives_every_event_one_position(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server.proof.log, "BATCH", 7)  # many small batches, interleaved with the recording

    async def scenario() -> None:
        async with _ledger_and_log(database_url, tmp_path) as (ledger, log):

            async def recorder(n: int) -> None:
                for i in range(10):
                    await ledger.record(_grant(f"cust-seq-{n}-{i % 3}", "email", "sms"))

            async def sequencer() -> None:
                for _ in range(15):
                    await log.sequence()
                    await asyncio.sleep(0)

            await asyncio.gather(*(recorder(n) for n in range(4)), sequencer(), sequencer())
            size = await log.sequence()

            conn = connections.get("default")
            events = {
                str(r["id"]): r["hash"] for r in await conn.execute_query_dict("SELECT id, hash FROM consent_events")
            }
            entries = await conn.execute_query_dict(
                "SELECT position, event_id, leaf_hash FROM log_entries ORDER BY position"
            )
            assert size == len(events) == 80
            assert [r["position"] for r in entries] == list(range(size))
            assert sorted(str(r["event_id"]) for r in entries) == sorted(events)
            assert await conn.execute_query_dict("SELECT id FROM log_queue") == []
            leaves = [bytes.fromhex(events[str(r["event_id"])]) for r in entries]
            assert await log.root(size) == independent.mth(leaves)

    run_sync(scenario())


def test_positions_follow_queue_order_whatever_order_the_rows_are_stored_in(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The queue is read back in the order its rows are stored (on PostgreSQL, by row address), which need not be
    queue order once space is reused: the rows are stored here in reverse, and positions still follow queue ids."""
    monkeypatch.setattr(server.proof.log, "BATCH", 4)

    async def scenario() -> None:
        async with _ledger_and_log(database_url, tmp_path) as (ledger, log):
            for i in range(10):
                await ledger.record(_grant(f"cust-order-{i}", "email"))
            conn = connections.get("default")
            queued = await conn.execute_query_dict("SELECT id, event_id, event_hash FROM log_queue ORDER BY id")
            assert len(queued) == 10
            await conn.execute_query("DELETE FROM log_queue")
            marks = ", ".join(placeholders(conn, 3))
            for row in reversed(queued):
                await conn.execute_query(
                    f"INSERT INTO log_queue (id, event_id, event_hash) VALUES ({marks})",
                    [row["id"], str(row["event_id"]), row["event_hash"]],
                )
            assert await log.sequence() == 10
            entries = await conn.execute_query_dict("SELECT position, event_id FROM log_entries ORDER BY position")
            assert [str(r["event_id"]) for r in entries] == [str(r["event_id"]) for r in queued]

    run_sync(scenario())
