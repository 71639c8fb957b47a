"""Nothing is acknowledged or released before Kafka confirmed what it needs."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from llmobs.retry import Backoff
from streams.sampling.agent import process
from streams.sampling.writes import Writes
from tests.streams.sampling.harness import KEEP_ALL, Harness
from tests.streams.sampling.spanbatches import trace_in_batches

FAST = Backoff(0.001, 0.001, deadline_s=float("inf"))


class HeldAcks:
    """Changelog acknowledgements the test releases, failing some first."""

    def __init__(self, failures: int = 0, then_at_once: bool = False) -> None:
        self.futures: list[asyncio.Future[None]] = []
        self.failures = failures
        self.then_at_once = then_at_once

    def __call__(self) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.failures:
            self.failures -= 1
            future.set_exception(OSError("not enough replicas"))
        elif self.then_at_once:
            future.set_result(None)
        self.futures.append(future)
        return future

    def release(self) -> None:
        for future in self.futures:
            if not future.done():
                future.set_result(None)


async def test_an_input_batch_returns_only_once_its_writes_are_in_kafka() -> None:
    h = await Harness.start(KEEP_ALL)
    acks = h.store.acks = HeldAcks()
    _, batches, _ = trace_in_batches(1, [[1]])

    task = asyncio.create_task(h.sampler.on_batch(0, 1, batches[0]))
    await asyncio.sleep(0.05)
    assert not task.done()

    acks.release()
    assert await asyncio.wait_for(task, 5) is True


async def test_a_failed_changelog_write_is_sent_again() -> None:
    h = await Harness.start(KEEP_ALL)
    h.sampler.writes.backoff = FAST
    h.store.acks = HeldAcks(failures=2, then_at_once=True)
    _, batches, _ = trace_in_batches(1, [[1]])

    assert await asyncio.wait_for(h.sampler.on_batch(0, 1, batches[0]), 5)

    assert len(h.store.writes) == 3  # the same batch, twice again


async def test_late_kept_spans_are_delivered_before_the_batch_returns() -> None:
    h = await Harness.start(KEEP_ALL)
    _, batches, _ = trace_in_batches(1, [[1, 0], [1]])
    await h.feed(batches[0])
    h.clock.now_s += 3
    await h.sampler.decide_due()
    delivery: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def send(key: bytes, value: bytes) -> Any:
        return delivery

    h.sampler.emitter.send = send
    task = asyncio.create_task(h.sampler.on_batch(0, 9, batches[1]))
    await asyncio.sleep(0.05)
    assert not task.done()

    delivery.set_result(None)
    assert await asyncio.wait_for(task, 5) is True


async def test_a_decision_releases_batches_only_once_it_is_durable() -> None:
    h = await Harness.start(KEEP_ALL)
    trace_id, batches, _ = trace_in_batches(1, [[1, 0]])
    await h.feed(batches[0])
    acks = h.store.acks = HeldAcks()
    h.clock.now_s += 3

    tick = asyncio.create_task(h.sampler.decide_due())
    await asyncio.sleep(0.05)
    assert h.store.writes[-1] == ("decision", 0, trace_id.encode())

    acks.release()
    await asyncio.sleep(0.05)
    assert h.store.writes[-1][0] == "batch"  # released after the decision
    acks.release()
    assert await asyncio.wait_for(tick, 5) == 1


async def test_a_revoke_during_retries_leaves_the_batch_unacknowledged() -> None:
    h = await Harness.start(KEEP_ALL)
    h.sampler.writes.backoff = Backoff(0.05, 0.05, deadline_s=float("inf"))
    h.store.acks = HeldAcks(failures=1_000_000)
    _, batches, _ = trace_in_batches(1, [[1]])

    task = asyncio.create_task(h.sampler.on_records([(1, 1, batches[0])]))
    await asyncio.sleep(0.1)
    await asyncio.wait_for(h.sampler.revoke({1}), 5)

    assert await asyncio.wait_for(task, 5) == {1}


@dataclass
class Message:
    partition: int
    offset: int
    acked: bool = False


@dataclass
class Event:
    message: Message
    value: bytes = b""
    headers: dict[str, Any] = field(default_factory=dict)


class FakeSampler:
    def __init__(self, result: set[int] | BaseException) -> None:
        self.result = result

    async def on_records(self, records: Any) -> set[int]:
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result


async def test_only_durable_records_are_acknowledged() -> None:
    events = [Event(Message(0, 1)), Event(Message(1, 1)), Event(Message(0, 2))]

    await process(FakeSampler({1}), events)  # type: ignore[arg-type]

    assert [e.message.acked for e in events] == [False, True, False]


async def test_a_batch_cut_short_is_never_acknowledged() -> None:
    for error in (asyncio.CancelledError(), RuntimeError("bug")):
        events = [Event(Message(0, 1)), Event(Message(1, 1))]
        try:
            await process(FakeSampler(error), events)  # type: ignore[arg-type]
        except BaseException as exc:
            assert exc is error
        # Marked acked on the message alone: take_events' own ack skips them.
        assert all(e.message.acked for e in events)


async def test_writes_of_a_revoked_partition_are_never_sent_again() -> None:
    calls: list[int] = []

    def send_for(partition: int) -> Any:
        def send() -> asyncio.Future[None]:
            calls.append(partition)
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            if calls.count(partition) == 1:
                future.set_exception(OSError("not enough replicas"))
            else:
                future.set_result(None)
            return future

        return send

    writes = Writes(asyncio.Event(), FAST)
    writes.add(send_for(0), 0)
    writes.add(send_for(1), 1)

    writes.forget({1})
    await asyncio.wait_for(writes.settle(), 5)

    assert calls == [0, 1, 0]
