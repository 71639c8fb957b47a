"""Decisions outlive the memory cache on disk, for a TTL, then expire."""

from __future__ import annotations

import time

from streams.sampling.decisions import Decision
from streams.sampling.state import stored
from tests.streams.sampling.harness import KEEP_ALL, KEEP_ERRORS, Harness
from tests.streams.sampling.spanbatches import trace_in_batches


async def decide(h: Harness, batch: bytes) -> None:
    await h.feed(batch)
    h.clock.now_s += 3
    await h.sampler.decide_due()


async def test_a_late_span_after_its_decision_left_memory_follows_it() -> None:
    h = await Harness.start(
        KEEP_ERRORS, decisions_on_disk=True, max_traces=1, decision_cache_size=1
    )
    first_id, first, first_spans = trace_in_batches(2, [[2, 0], [1]], error=True)
    _, other, _ = trace_in_batches(1, [[1, 0]])
    await decide(h, first[0])
    await decide(h, other[0])  # evicts the first decision from memory
    assert h.sampler.metrics.decision_cache_evictions == 1

    await h.feed(first[1])

    assert first_id not in h.sampler.buffer  # not a new trace
    assert h.sent_spans(first_id) == first_spans
    assert h.sampler.metrics.late_spans["kept"] == 1


async def test_decisions_on_disk_expire_after_their_ttl() -> None:
    h = await Harness.start(KEEP_ALL, decisions_on_disk=True, decision_ttl_s=60)
    _, batches, _ = trace_in_batches(1, [[1, 0]])
    await decide(h, batches[0])
    assert len(h.store.decisions) == 1
    h.clock.now_s += 30
    await h.sampler.decide_due()
    assert len(h.store.decisions) == 1

    h.clock.now_s += 31
    await h.sampler.decide_due()

    assert h.store.decisions == {}
    assert len(h.sampler.decisions) == 0
    assert h.sampler.metrics.decisions_expired == 1


async def test_a_late_span_whose_decision_expired_is_counted_unknown() -> None:
    h = await Harness.start(KEEP_ALL, decisions_on_disk=True, decision_ttl_s=60)
    h.clock.now_s = time.time()
    trace_id, batches, _ = trace_in_batches(2, [[2, 0], [1]])
    await decide(h, batches[0])
    h.clock.now_s += 120
    await h.sampler.decide_due()

    await h.feed(batches[1])

    assert h.sampler.metrics.late_spans["unknown"] == 1
    assert trace_id in h.sampler.buffer  # decided again, as nothing is known


async def test_fresh_spans_of_a_new_trace_are_not_counted_late() -> None:
    h = await Harness.start(KEEP_ALL, decisions_on_disk=True, decision_ttl_s=60)
    h.clock.now_s = time.time() + 5
    _, batches, _ = trace_in_batches(1, [[1]])

    await h.feed(batches[0])

    assert h.sampler.metrics.late_spans["unknown"] == 0


async def test_a_restore_deletes_the_decisions_it_evicts() -> None:
    h = await Harness.start(KEEP_ALL, max_traces=1, decision_cache_size=2)
    for index in range(3):
        decision = Decision(True, "all", 1.0, 0, 1000.0 + index)
        h.store.decisions[f"{index:032x}".encode()] = decision.encode()

    await h.restart(KEEP_ALL)

    assert sorted(h.store.decisions) == [f"{i:032x}".encode() for i in (1, 2)]
    assert len(h.sampler.decisions) == 2


async def test_a_restore_reads_decisions_on_disk_on_demand() -> None:
    h = await Harness.start(KEEP_ALL, decisions_on_disk=True)
    trace_id, batches, _ = trace_in_batches(1, [[1, 0], [1]])
    await decide(h, batches[0])
    # A crash between the decision and the release leaves a stale batch.
    h.store.batches[f"{trace_id}/0/99".encode()] = stored(1000.0, batches[0])
    stale_value = h.store.decisions[trace_id.encode()]

    stale = await h.restart(KEEP_ALL)

    assert stale == [f"{trace_id}/0/99".encode()]
    assert len(h.sampler.decisions) == 1  # only the one looked up
    assert h.store.decisions[trace_id.encode()] == stale_value
