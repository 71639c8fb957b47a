"""The metrics agent under revokes and failing saves: never ahead of its state."""

from __future__ import annotations

import asyncio
import base64
import random

import orjson
import pytest

from llmobs.retry import Backoff
from streams.metrics import agent
from tests.streams.metrics.fakes import (
    BASE_NS,
    FakeEvent,
    FakeMessage,
    FakeTable,
    aggregator,
    consumer_acks,
    events,
)
from tests.streams.metrics.spans import batch, span


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        agent, "SAVE_BACKOFF", Backoff(initial_s=0.01, max_s=0.01, deadline_s=1e9)
    )


async def until(condition: object, timeout_s: float = 5.0) -> None:
    async def wait() -> None:
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.001)

    await asyncio.wait_for(wait(), timeout_s)


async def test_a_revoke_while_windows_are_delivered_waits_for_the_delivery() -> None:
    # The fault: revoking cleared the partitions while a tick iterated them
    # across an await ("dictionary changed size during iteration").
    table = FakeTable()
    worker = aggregator(table)
    worker.assign([0, 1, 2])
    for partition in (0, 1, 2):
        worker.partitions[partition].windows.apply(0, events(0, range(1))[0].value)
    table.gate = asyncio.Event()
    tick = asyncio.create_task(worker.tick())
    await until(lambda: table.attempts > 0)

    revoke = asyncio.create_task(worker.revoke([0, 1, 2]))
    await asyncio.sleep(0.01)
    table.gate.set()
    await asyncio.wait_for(asyncio.gather(tick, revoke), 5)

    assert worker.partitions == {}


async def test_a_save_that_fails_is_retried_before_the_batch_is_acknowledged() -> None:
    table = FakeTable()
    table.fail = lambda attempt, _partition: attempt <= 3
    worker = aggregator(table)
    worker.assign([0])
    batch = events(0, range(5))

    await agent.process(worker, batch)

    assert consumer_acks(batch) == [(0, offset) for offset in range(5)]
    assert worker.partitions[0].windows.applied_offset == 4
    assert table.log, "the state reached the changelog"
    assert sum(r["requests"] for r in worker.output.sent) == 5


async def test_a_batch_revoked_while_its_save_fails_is_never_acknowledged() -> None:
    table = FakeTable()
    table.fail = lambda _attempt, partition: partition == 0
    worker = aggregator(table)
    worker.assign([0, 1])
    batch = events(0, range(3)) + events(1, range(2))
    task = asyncio.create_task(agent.process(worker, batch))
    await until(lambda: table.attempts >= 3)

    await worker.revoke([0])
    await asyncio.wait_for(task, 5)

    assert 0 not in worker.partitions
    assert consumer_acks(batch) == [(1, 0), (1, 1)]


async def test_records_of_a_partition_not_owned_are_not_acknowledged() -> None:
    worker = aggregator()
    worker.assign([1])
    batch = events(0, range(2)) + events(1, range(2))

    await agent.process(worker, batch)

    assert consumer_acks(batch) == [(1, 0), (1, 1)]


async def test_an_unexpected_error_leaves_the_whole_batch_unacknowledged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    worker = aggregator()
    worker.assign([0])
    batch = events(0, range(3))

    def broken(*_args: object) -> int:
        raise KeyError("end_unix_nano")

    monkeypatch.setattr(worker.partitions[0].windows, "apply", broken)
    with pytest.raises(KeyError):
        await agent.process(worker, batch)

    assert consumer_acks(batch) == []


async def test_spans_replayed_from_the_archive_are_not_counted_again() -> None:
    from sinks.archive.worker import HEADER_REPLAYED

    worker = aggregator()
    worker.assign([0])
    first = events(0, range(3))
    replayed = events(0, range(3, 6))
    for event in replayed:
        event.message.headers.append((HEADER_REPLAYED, b"archive"))

    await agent.process(worker, first + replayed)

    assert agent.HEADER_REPLAYED == HEADER_REPLAYED
    assert sum(r["requests"] for r in worker.output.sent) == 3
    assert worker.replays_skipped == 3
    assert "llmobs_metrics_archive_replays_skipped_total 3" in worker.prometheus()
    assert len(consumer_acks(first + replayed)) == 6


async def test_a_revoked_partition_leaves_no_state_behind_to_come_back() -> None:
    table = FakeTable()
    worker = aggregator(table)
    worker.assign([0, 1])
    await agent.process(worker, events(0, range(3)) + events(1, range(2)))
    assert any(k.startswith(b"0:") for k in table.data)

    await worker.revoke([0])

    assert table.data and not any(k.startswith(b"0:") for k in table.data)


async def test_copies_of_spans_count_once_and_show_on_metrics() -> None:
    worker = aggregator()
    worker.assign([0])
    first = events(0, range(3))
    # The same spans in other llm.spans records, as a restarted decode
    # stage produces them again.
    again = [FakeEvent(FakeMessage(0, 3 + i), e.value) for i, e in enumerate(first)]

    await agent.process(worker, first + again)

    assert sum(r["requests"] for r in worker.output.sent) == 3
    assert worker.duplicate_spans == 3
    assert "llmobs_metrics_duplicate_spans_total 3" in worker.prometheus()
    assert "llmobs_metrics_span_identities 3" in worker.prometheus()


async def test_a_slot_full_again_after_its_split_is_saved_within_the_batch() -> None:
    table = FakeTable()
    worker = aggregator(table)
    worker.assign([0])
    worker.partitions[0].windows.bucket_spans_max = 4
    rng = random.Random(7)
    # One batch of 40 records, every request in the same slot.
    batch_events = [
        FakeEvent(
            FakeMessage(0, offset),
            batch("acme", [span(rng, BASE_NS, provider="openai", request_model="m")]),
        )
        for offset in range(40)
    ]

    await agent.process(worker, batch_events)
    worker.partitions[0].windows.close(now_ms=BASE_NS // 10**6 + 3_600_000)
    await worker.tick()

    assert sum(r["requests"] for r in worker.output.sent) == 40
    held = [
        len(base64.b64decode(orjson.loads(value)["span_hashes"])) // 8
        for _, key, value in table.log
        if value is not None and key.startswith(b"0:b:")
    ]
    # The limit, plus what one record adds before the worker saves.
    assert held and max(held) <= 4 + 1
