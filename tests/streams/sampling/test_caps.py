"""Memory stays bounded: caps force early decisions, counted, never drops."""

from __future__ import annotations

import pytest

from llmobs.errors import ConfigError
from streams.sampling.agent import check_partitions
from streams.sampling.state import batch_key, stored
from tests.streams.sampling.harness import KEEP_ALL, Harness
from tests.streams.sampling.spanbatches import trace_in_batches


async def test_the_total_bytes_cap_forces_the_oldest_trace_out() -> None:
    traces = [trace_in_batches(1, [[1]]) for _ in range(3)]
    size = max(len(stored(0.0, batches[0])) for _, batches, _ in traces)
    h = await Harness.start(
        KEEP_ALL, max_bytes_per_trace=2 * size, max_buffer_bytes=int(2.5 * size)
    )

    for _, batches, _ in traces:
        await h.feed(batches[0])
        h.clock.now_s += 1

    assert h.sampler.metrics.forced["max_buffer_bytes"] == 1
    assert {r["trace_id"] for r in h.sent} == {traces[0][0]}
    assert list(h.sampler.buffer.traces) == [t[0] for t in traces[1:]]
    assert h.sampler.buffer.held_bytes <= 2.5 * size


async def test_a_restore_beyond_max_traces_decides_the_oldest_at_once() -> None:
    h = await Harness.start(KEEP_ALL, max_traces=2)
    ids = []
    for offset in range(3):
        trace_id, batches, _ = trace_in_batches(1, [[1]])
        ids.append(trace_id)
        key = batch_key(trace_id, 0, offset)
        h.store.batches[key] = stored(1000.0 + offset, batches[0])

    await h.restart(KEEP_ALL)

    assert list(h.sampler.buffer.traces) == ids[1:]
    assert h.sampler.metrics.forced["max_traces"] == 1
    assert ids[0].encode() in h.store.decisions


def test_tables_partitioned_unlike_their_input_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"has 4 partitions .* llm.spans has 6"):
        check_partitions(
            "llm.spans", 6, [("app-sampling-spans-changelog", 6), ("x", 4)]
        )

    check_partitions("llm.spans", 6, [("a", 6), ("b", None)])
    check_partitions("llm.spans", None, [("a", 4)])
