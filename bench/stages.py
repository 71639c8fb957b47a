"""In-process benchmarks of the stream worker's stages (no Kafka)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

from bench.common import requests_of


def bench_decode(traces: int) -> float:
    from streams.decode import Source, decode_message

    bodies = requests_of(traces, per_request=8)
    # The price catalog loads on first use, once per process: not per span.
    decode_message(bodies[0], None, Source("bench", 0, 0))
    started = time.perf_counter()
    spans = 0
    for offset, body in enumerate(bodies):
        spans += decode_message(body, None, Source("bench", 0, offset)).spans
    return spans / (time.perf_counter() - started)


def bench_enrichment(traces: int) -> float:
    """Spans priced per second: the cost stage alone, on normalized records."""
    import schemas
    from streams.cost import Pricer
    from streams.decode import Source, decode_message

    codec = schemas.codec(schemas.SPAN_BATCH)
    spans: list[tuple[Any, int, str]] = []
    for offset, body in enumerate(requests_of(traces, per_request=8)):
        decoded = decode_message(body, None, Source("bench", 0, offset))
        for _, value in decoded.batches:
            batch = codec.decode(value)
            spans.extend(
                (s["genai"], s["start_unix_nano"], batch["tenant"])
                for s in batch["spans"]
            )
    pricer = Pricer()
    started = time.perf_counter()
    for genai, start_ns, tenant in spans:
        pricer.price(genai, start_ns, tenant)
    return len(spans) / (time.perf_counter() - started)


class _NullStore:
    """Where the Faust tables' changelog writes would go."""

    def put_batch(self, partition: int, key: bytes, value: bytes) -> None: ...
    def delete_batch(self, partition: int, key: bytes) -> None: ...
    def put_decision(self, partition: int, trace_id: str, value: bytes) -> None: ...
    def delete_decision(self, partition: int, trace_id: str) -> None: ...


def bench_sampler(traces: int) -> tuple[float, float]:
    """Spans/s through the sampler, and bytes held per buffered span."""
    import tracemalloc

    import schemas
    from streams.decode import Source, decode_message
    from streams.sampling import config
    from streams.sampling.sampler import Sampler
    from streams.sampling.settings import DEFAULT_POLICIES, SamplingSettings

    values = []
    for offset, body in enumerate(requests_of(traces, per_request=8)):
        decoded = decode_message(body, None, Source("bench", 0, offset))
        values += [value for _, value in decoded.batches]
    policies = config.load(DEFAULT_POLICIES)
    # Room for every trace: the figure is the work per span, not forced decisions.
    room = {"max_traces": traces + 1, "decision_cache_size": traces + 1}
    settings = dataclasses.replace(SamplingSettings(), **room)  # type: ignore[type-var]

    async def send(key: bytes, value: bytes) -> asyncio.Future[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    clock = [0.0]

    def new_sampler() -> Sampler:
        codec = schemas.codec(schemas.SPAN_BATCH)
        return Sampler(settings, policies, codec, _NullStore(), send, lambda: clock[0])

    async def speed() -> float:
        sampler = new_sampler()
        started = time.perf_counter()
        for offset, value in enumerate(values):
            await sampler.on_batch(0, offset, value)
        spans = sampler.buffer.spans
        clock[0] += settings.decision_wait_s
        await sampler.decide_due()
        return spans / (time.perf_counter() - started)

    async def memory() -> float:
        # A run of its own: tracing allocations slows the code it traces.
        sampler = new_sampler()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for offset, value in enumerate(values):
            await sampler.on_batch(0, offset, value)
        held = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        return held / sampler.buffer.spans

    return asyncio.run(speed()), asyncio.run(memory())


def bench_aggregation(traces: int) -> float:
    """Spans/s through the one-minute windows of the metrics stage."""
    import schemas
    from streams.decode import Source, decode_message
    from streams.metrics.window import PartitionWindows

    codec = schemas.codec(schemas.SPAN_BATCH)
    batches = []
    for offset, body in enumerate(requests_of(traces, per_request=8)):
        decoded = decode_message(body, None, Source("bench", 0, offset))
        batches += [codec.decode(value) for _, value in decoded.batches]
    windows = PartitionWindows("bench[0]", window_s=60, grace_s=10)
    spans = sum(len(batch["spans"]) for batch in batches)
    started = time.perf_counter()
    for offset, batch in enumerate(batches):
        windows.apply(offset, batch)
    windows.close(now_ms=2**62)
    return spans / (time.perf_counter() - started)
