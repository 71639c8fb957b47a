"""In-process benchmarks of the stream worker's stages (no Kafka)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import tempfile
import time
from collections.abc import Iterator
from typing import Any, cast

from bench.common import requests_of
from streams.sampling.settings import MEMORY, ROCKSDB


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


class _LocalStore:
    """A sampler table's local store alone; changelog writes go nowhere."""

    decisions_on_disk = False

    def __init__(self, local: Any) -> None:
        self.local = local

    def get_batch(self, partition: int, key: bytes) -> bytes | None:
        return cast(bytes | None, self.local.get_in(partition, key))

    def put_batch(self, partition: int, key: bytes, value: bytes) -> Any:
        self.local.put_in(partition, key, value)
        return _done()

    def delete_batch(self, partition: int, key: bytes) -> Any:
        self.local.delete_in(partition, key)
        return _done()

    def put_decision(self, partition: int, trace_id: str, value: bytes) -> Any:
        return _done()

    def delete_decision(self, partition: int, trace_id: str) -> Any:
        return _done()

    def get_decision(self, partition: int, trace_id: str) -> bytes | None:
        return None

    def scan_decisions(
        self, partition: int, after: bytes | None, limit: int
    ) -> list[tuple[bytes, bytes]]:
        return []


def _done() -> asyncio.Future[None]:
    """A write Kafka confirmed at once."""
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future


@contextlib.contextmanager
def _local_store(kind: str) -> Iterator[_LocalStore]:
    """The real Faust store of ``kind`` for partition 0, in a scratch folder."""
    import faust
    from faust.types import TP

    from streams.sampling.store import partitioned, table_options

    with tempfile.TemporaryDirectory(prefix="llmobs-bench-") as data_dir:
        app = faust.App("bench-sampler", broker="kafka://127.0.0.1:1", datadir=data_dir)
        table = app.Table("spans", **table_options(kind, "spans", 1))
        if kind == ROCKSDB:
            tp = TP(table.changelog_topic_name, 0)
            asyncio.run(table.data.assign_partitions(table, {tp}))
        yield _LocalStore(partitioned(table))


def bench_sampler(traces: int) -> tuple[float, float, float]:
    """Spans/s through the sampler (RocksDB store), memory per buffered span.

    Memory is the Python heap the buffer grows by, with the memory store and
    with the RocksDB store, whose batches are on disk (its memtables, bounded
    per partition, are outside the Python heap).
    """
    import tracemalloc

    import schemas
    from streams.decode import Source, decode_message
    from streams.sampling import config
    from streams.sampling.emit import Emitter
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
        return _done()

    clock = [0.0]

    def new_sampler(store: _LocalStore) -> Sampler:
        codec = schemas.codec(schemas.SPAN_BATCH)
        emitter = Emitter(send, codec)
        return Sampler(settings, policies, codec, store, emitter, lambda: clock[0])

    async def speed(store: _LocalStore) -> float:
        sampler = new_sampler(store)
        await sampler.restore([], [], {0})
        started = time.perf_counter()
        # In batches, as the agent takes them from llm.spans.
        size = settings.sampling_batch_records
        records = [(0, offset, value) for offset, value in enumerate(values)]
        for start in range(0, len(records), size):
            await sampler.on_records(records[start : start + size])
        spans = sampler.buffer.spans
        clock[0] += settings.decision_wait_s
        await sampler.decide_due()
        return spans / (time.perf_counter() - started)

    async def memory(store: _LocalStore) -> float:
        # A run of its own: tracing allocations slows the code it traces.
        sampler = new_sampler(store)
        await sampler.restore([], [], {0})
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for offset, value in enumerate(values):
            await sampler.on_batch(0, offset, value)
        held = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        return held / sampler.buffer.spans

    with _local_store(ROCKSDB) as store:
        spans_per_s = asyncio.run(speed(store))
    with _local_store(MEMORY) as store:
        in_memory = asyncio.run(memory(store))
    with _local_store(ROCKSDB) as store:
        on_disk = asyncio.run(memory(store))
    return spans_per_s, in_memory, on_disk


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
