"""The sampler's logic driven directly: completion, caps, late spans, restore."""

from __future__ import annotations

from typing import Any

from llmobs.retry import Backoff
from streams.sampling import policies as p
from streams.sampling.combine import PolicySet
from tests.streams.sampling.harness import CODEC, KEEP_ALL, KEEP_ERRORS, Harness
from tests.streams.sampling.spanbatches import trace_in_batches


async def test_a_trace_is_decided_after_its_root_and_a_quiet_period() -> None:
    h = await Harness.start(KEEP_ALL)
    trace_id, batches, span_ids = trace_in_batches(2, [[1, 2], [0]])

    await h.feed(batches[0])
    h.clock.now_s += 5
    assert await h.sampler.decide_due() == 0  # no root yet, wait not over
    await h.feed(batches[1])
    h.clock.now_s += 1
    assert await h.sampler.decide_due() == 0  # not quiet yet
    h.clock.now_s += 1.5
    assert await h.sampler.decide_due() == 1

    assert h.sent_spans(trace_id) == span_ids
    assert {(r["sampling_policy"], r["sampling_adjusted_count"]) for r in h.sent} == {
        ("all", 1.0)
    }
    assert h.store.batches == {}
    assert trace_id.encode() in h.store.decisions
    assert h.sampler.metrics.triggers["complete"] == 1


async def test_decision_wait_decides_a_trace_whose_root_never_comes() -> None:
    h = await Harness.start(KEEP_ALL)
    _, batches, _ = trace_in_batches(2, [[1], [2]])

    await h.feed(batches[0])
    h.clock.now_s += 10
    await h.feed(batches[1])
    h.clock.now_s += 20
    assert await h.sampler.decide_due() == 1
    assert h.sampler.metrics.triggers["decision_wait"] == 1


async def test_late_spans_follow_the_decision_kept_or_dropped() -> None:
    h = await Harness.start(KEEP_ERRORS)
    kept_id, kept, kept_spans = trace_in_batches(2, [[2, 0], [1]], error=True)
    dropped_id, dropped, _ = trace_in_batches(2, [[2, 0], [1]])

    await h.feed(kept[0])
    await h.feed(dropped[0])
    h.clock.now_s += 3
    assert await h.sampler.decide_due() == 2
    await h.feed(kept[1])
    await h.feed(dropped[1])

    assert h.sent_spans(kept_id) == kept_spans
    assert h.sent_spans(dropped_id) == set()
    assert dict(h.sampler.metrics.late_spans) == {"kept": 1, "dropped": 1}


async def test_a_trace_over_the_span_cap_is_decided_early_and_stays_whole() -> None:
    h = await Harness.start(KEEP_ERRORS, max_spans_per_trace=4)
    trace_id, batches, span_ids = trace_in_batches(
        6, [[1, 2], [3, 4, 6], [5, 0]], error=True
    )

    await h.feed(batches[0])
    assert h.sent == []
    await h.feed(batches[1])
    assert h.sampler.metrics.forced["max_spans_per_trace"] == 1
    await h.feed(batches[2])

    assert h.sent_spans(trace_id) == span_ids
    assert len(h.sampler.buffer) == 0


async def test_the_trace_cap_forces_the_oldest_trace_out() -> None:
    h = await Harness.start(KEEP_ALL, max_traces=2, decision_cache_size=10)
    ids = []
    for _ in range(3):
        trace_id, batches, _ = trace_in_batches(1, [[1]])
        ids.append(trace_id)
        await h.feed(batches[0])
        h.clock.now_s += 1

    assert h.sampler.metrics.forced["max_traces"] == 1
    assert {r["trace_id"] for r in h.sent} == {ids[0]}
    assert list(h.sampler.buffer.traces) == ids[1:]


async def test_a_replayed_input_record_is_not_buffered_twice() -> None:
    h = await Harness.start(KEEP_ALL)
    _, batches, _ = trace_in_batches(1, [[1]])

    await h.sampler.on_batch(0, 7, batches[0])
    await h.sampler.on_batch(0, 7, batches[0])

    assert h.sampler.buffer.spans == 1
    assert h.sampler.metrics.duplicate_batches == 1


async def test_a_replayed_batch_kept_on_local_disk_reaches_the_changelog() -> None:
    h = await Harness.start(KEEP_ALL)
    _, batches, _ = trace_in_batches(1, [[1]])
    await h.sampler.on_batch(0, 7, batches[0])
    ((key, value),) = h.store.batches.items()
    # SIGKILL: the local store kept the batch, its changelog write was lost.
    await h.restart(KEEP_ALL)
    h.store.writes.clear()

    await h.sampler.on_batch(0, 7, batches[0])

    assert h.sampler.metrics.duplicate_batches == 1
    assert h.store.writes == [("batch", 0, key)]
    assert h.store.batches[key] == value  # as first stored, arrival time too


async def test_the_decision_cache_is_bounded_and_evictions_are_durable() -> None:
    h = await Harness.start(KEEP_ALL, max_traces=1, decision_cache_size=2)
    for _ in range(4):
        _, batches, _ = trace_in_batches(1, [[1, 0]])
        await h.feed(batches[0])
        h.clock.now_s += 3
        await h.sampler.decide_due()

    assert len(h.sampler.decisions) == 2
    assert len(h.store.decisions) == 2
    assert h.sampler.metrics.decision_cache_evictions == 2


async def test_restore_rebuilds_pending_traces_and_decisions() -> None:
    h = await Harness.start(KEEP_ALL)
    pending_id, pending, _ = trace_in_batches(2, [[1], [2], [0]])
    decided_id, decided, _ = trace_in_batches(1, [[1, 0], [1]])
    await h.feed(pending[0])
    await h.feed(pending[1])
    await h.feed(decided[0])
    h.clock.now_s += 3
    await h.sampler.decide_due()
    # A crash between the decision and the release leaves a stale batch.
    h.store.batches[b"%s/0/99" % decided_id.encode()] = next(
        iter(h.store.batches.values())
    )

    restarted = h.new_sampler(KEEP_ALL)
    h.sampler = restarted
    stale = await restarted.restore(
        list(h.store.batches.items()), list(h.store.decisions.items()), {0}
    )

    assert stale == [b"%s/0/99" % decided_id.encode()]
    assert list(restarted.buffer.traces) == [pending_id]
    assert restarted.buffer.traces[pending_id].first_seen_s == 1000.0
    await h.feed(pending[2])
    await h.feed(decided[1])  # late: follows the restored decision
    h.clock.now_s += 3
    assert await restarted.decide_due() == 1
    assert len(h.sent_spans(pending_id)) == 3
    assert restarted.metrics.late_spans["kept"] == 1


async def test_restore_ignores_partitions_owned_by_others() -> None:
    h = await Harness.start(KEEP_ALL)
    _, batches, _ = trace_in_batches(1, [[1]])
    await h.feed(batches[0], partition=2)

    restarted = h.new_sampler(KEEP_ALL)
    stale = await restarted.restore(list(h.store.batches.items()), [], {0, 1})

    assert stale == []


async def test_undecodable_input_is_counted_not_fatal() -> None:
    h = await Harness.start(KEEP_ALL)

    await h.feed(b"garbage")

    assert h.sampler.metrics.undecodable_batches == 1
    assert "llmobs_sampling_undecodable_batches_total 1" in (
        h.sampler.metrics.prometheus()
    )


async def test_a_failed_delivery_holds_its_trace_and_the_tick_goes_on() -> None:
    h = await Harness.start(KEEP_ALL)
    broken_id, broken, _ = trace_in_batches(1, [[1, 0]])
    fine_id, fine, fine_spans = trace_in_batches(1, [[1, 0]])
    await h.feed(broken[0])
    await h.feed(fine[0])
    h.clock.now_s += 3

    async def flaky(key: bytes, value: bytes) -> Any:
        if key == broken_id.encode():
            raise OSError("broker down")
        return await h.send(key, value)

    h.emitter.send = flaky
    h.sampler.decision_backoff = Backoff(0.001, 0.001, deadline_s=0.01)
    # Raised into Faust's timer, an error would crash the worker.
    assert await h.sampler.decide_due() == 1
    assert broken_id in h.sampler.buffer
    assert h.sampler.decisions.get(broken_id, 0) is None
    assert h.sent_spans(fine_id) == fine_spans
    assert h.sampler.metrics.failed_decisions == 1

    h.emitter.send = h.send
    assert await h.sampler.decide_due() == 1
    assert broken_id.encode() in h.store.decisions


async def test_a_failing_policy_holds_the_trace_instead_of_raising() -> None:
    class Broken(p.Policy):
        def matches(self, trace: Any) -> bool:
            raise ZeroDivisionError

    h = await Harness.start(PolicySet([Broken("broken")], []))
    trace_id, batches, _ = trace_in_batches(1, [[1, 0]])
    await h.feed(batches[0])
    h.clock.now_s += 3

    assert await h.sampler.decide_due() == 0
    assert trace_id in h.sampler.buffer
    assert h.sampler.metrics.failed_decisions == 1


def test_metrics_page_has_the_counters() -> None:
    h = Harness(KEEP_ALL)
    h.sampler.metrics.decided("errors", True, 4, "complete", 1.2)
    text = h.sampler.metrics.prometheus()

    assert 'llmobs_sampling_decisions_total{policy="errors",decision="kept"} 1' in text
    assert 'llmobs_sampling_decision_latency_seconds_bucket{le="2.5"} 1' in text
    assert 'llmobs_sampling_decision_latency_seconds_bucket{le="1.0"} 0' in text


async def test_the_buffer_reads_batches_back_from_the_store_at_decision() -> None:
    h = await Harness.start(KEEP_ALL)
    trace_id, batches, span_ids = trace_in_batches(3, [[1], [2, 3], [0]])
    for batch in batches:
        await h.feed(batch)
    # Only keys stay in memory: what the store holds is what is emitted.
    assert all(not hasattr(t, "values") for t in h.sampler.buffer.traces.values())
    lost = next(k for k in h.store.batches if k.endswith(b"/0/1"))
    del h.store.batches[lost]

    h.clock.now_s += 3
    assert await h.sampler.decide_due() == 1

    first = {s["span_id"] for s in CODEC.decode(batches[0])["spans"]}
    assert h.sent_spans(trace_id) == span_ids - first
    assert h.sampler.metrics.missing_batches == 1
    assert "llmobs_sampling_missing_batches_total 1" in h.sampler.metrics.prometheus()


async def test_a_trace_exported_twice_is_emitted_with_each_span_once() -> None:
    h = await Harness.start(KEEP_ALL)
    trace_id, batches, span_ids = trace_in_batches(2, [[1, 2], [0]])
    # The first batch again at a later offset, as a client's retry makes it.
    for batch in [batches[0], batches[0], batches[1]]:
        await h.feed(batch)

    h.clock.now_s += 3
    assert await h.sampler.decide_due() == 1

    emitted = [
        s["span_id"] for r in h.sent if r["trace_id"] == trace_id for s in r["spans"]
    ]
    assert sorted(emitted) == sorted(span_ids)
    assert h.sampler.metrics.repeated_spans == 2
    assert "llmobs_sampling_repeated_spans_total 2" in h.sampler.metrics.prometheus()
