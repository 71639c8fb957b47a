"""Kept records too large for Kafka are split, or dead-lettered, never stuck."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.errors import MessageSizeTooLargeError
from faust.exceptions import ProducerSendError

from llmobs import topics
from llmobs.retry import Backoff
from streams.sampling.emit import Emitter, Outgoing
from tests.streams.sampling.harness import CODEC, KEEP_ALL, Harness, done
from tests.streams.sampling.spanbatches import trace_in_batches

FAST = Backoff(0.001, 0.001, deadline_s=1.0)


def big_span_record(calls: int) -> tuple[str, dict[str, Any]]:
    """One SpanBatch record of a trace of ``calls`` model calls."""
    trace_id, batches, _ = trace_in_batches(calls, [list(range(calls + 1))])
    return trace_id, CODEC.decode(batches[0])


async def test_a_kept_record_over_the_size_limit_is_split_into_fitting_ones() -> None:
    h = await Harness.start(KEEP_ALL)
    trace_id, batches, span_ids = trace_in_batches(8, [list(range(9))])
    h.emitter.max_record_bytes = len(batches[0]) // 3
    await h.feed(batches[0])
    h.clock.now_s += 3

    assert await h.sampler.decide_due() == 1

    assert len(h.sent) > 1
    assert sorted(s["span_id"] for r in h.sent for s in r["spans"]) == sorted(span_ids)
    assert h.sampler.metrics.split_records >= 1
    assert trace_id.encode() in h.store.decisions


async def test_a_single_span_too_large_goes_to_the_dead_letter_topic() -> None:
    h = await Harness.start(KEEP_ALL)
    trace_id, batches, span_ids = trace_in_batches(1, [[1, 0]])
    h.emitter.max_record_bytes = 10
    await h.feed(batches[0])
    h.clock.now_s += 3

    assert await h.sampler.decide_due() == 1

    assert h.sent == []
    assert {s["span_id"] for r, _ in h.dead for s in r["spans"]} == span_ids
    _, headers = h.dead[0]
    assert headers[topics.HEADER_DLQ_REASON] == b"sampled_record_too_large"
    assert headers[topics.HEADER_DLQ_PARTITION] == b"0"
    assert trace_id.encode() in h.store.decisions
    assert h.sampler.metrics.dead_lettered_records == 2


async def test_a_record_the_broker_refuses_as_too_large_is_split() -> None:
    sent: list[dict[str, Any]] = []

    async def send(key: bytes, value: bytes) -> Any:
        record = CODEC.decode(value)
        if len(record["spans"]) > 2:
            # What Faust raises when aiokafka refuses the record up front.
            error = MessageSizeTooLargeError()
            raise ProducerSendError(f"Error while sending: {error!r}") from error
        sent.append(record)
        return done()

    _, record = big_span_record(4)
    emitter = Emitter(send, CODEC)

    left = await emitter.deliver([Outgoing(b"k", record)], FAST, asyncio.Event())

    assert left == []
    assert sum(len(r["spans"]) for r in sent) == len(record["spans"])
    assert all(len(r["spans"]) <= 2 for r in sent)


async def test_records_still_undelivered_at_the_deadline_are_returned() -> None:
    async def send(key: bytes, value: bytes) -> Any:
        raise OSError("broker down")

    _, record = big_span_record(1)
    emitter = Emitter(send, CODEC)
    outgoing = Outgoing(b"k", record)

    left = await emitter.deliver([outgoing], FAST, asyncio.Event())

    assert left == [outgoing]
