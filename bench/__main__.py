"""``make bench``: throughput and latency of the pipeline, printed as a table.

Stages measured against the real local services:
- decode: the Faust stage's per-message work in-process (no Kafka);
- sampler: the tail sampler's per-batch work and decisions in-process (no
  Kafka), and the memory it holds per buffered span (tracemalloc);
- cost enrichment: ``Pricer.price`` alone over the normalized GenAI records
  of the same synthetic spans, in-process;
- gateway: OTLP/HTTP requests acknowledged (Kafka delivery confirmed);
- end to end: gateway -> Kafka -> streams -> Kafka -> sink -> PostgreSQL,
  with the latency from each request's acknowledgement to its rows being
  written (``llm_spans.written_at``).
Each throughput figure is the median of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import statistics
import time
import uuid
from typing import Any

from bench.processes import Pipeline, running
from llmobs import synthetic
from llmobs.topics import ensure_topics

DATABASE_URL = os.environ.get(
    "LLMOBS_DATABASE_URL", "postgresql://llmobs:llmobs@127.0.0.1:5432/llmobs"
)
BOOTSTRAP = os.environ.get("LLMOBS_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
JAEGER_OTLP = os.environ.get("LLMOBS_JAEGER_OTLP", "http://127.0.0.1:24318")
SPANS_PER_TRACE = 4  # one agent span and three chat spans


def requests_of(
    traces: int, per_request: int, tenant: str | None = None
) -> list[bytes]:
    """Serialized OTLP requests of ``per_request`` traces each."""
    bodies = []
    batch = []
    for _ in range(traces):
        batch.append(synthetic.llm_trace(calls=SPANS_PER_TRACE - 1, tenant=tenant))
        if len(batch) == per_request:
            bodies.append(synthetic.merge(batch).SerializeToString())
            batch = []
    if batch:
        bodies.append(synthetic.merge(batch).SerializeToString())
    return bodies


def bench_decode(traces: int) -> float:
    from streams.decode import Source, decode_message

    bodies = requests_of(traces, per_request=8)
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

    async def run() -> tuple[float, float]:
        codec = schemas.codec(schemas.SPAN_BATCH)
        sampler = Sampler(
            settings, policies, codec, _NullStore(), send, lambda: clock[0]
        )
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        started = time.perf_counter()
        for offset, value in enumerate(values):
            await sampler.on_batch(0, offset, value)
        fed_s = time.perf_counter() - started
        held = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        spans = sampler.buffer.spans
        clock[0] += settings.decision_wait_s
        started = time.perf_counter()
        await sampler.decide_due()
        elapsed_s = fed_s + time.perf_counter() - started
        return spans / elapsed_s, held / spans

    return asyncio.run(run())


async def post_all(
    endpoint: str, bodies: list[bytes], concurrency: int
) -> tuple[float, list[float]]:
    """POST every body; return elapsed seconds and each request's ack time."""
    import aiohttp

    url = f"{endpoint}/v1/traces"
    acks: list[float] = [0.0] * len(bodies)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(len(bodies)):
        queue.put_nowait(index)

    async def worker(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            index = queue.get_nowait()
            while True:
                async with session.post(
                    url,
                    data=bodies[index],
                    headers={"Content-Type": "application/x-protobuf"},
                ) as response:
                    await response.read()
                    if response.status == 200:
                        acks[index] = time.time()
                        break
                    if response.status not in (429, 503):
                        raise RuntimeError(f"gateway answered {response.status}")
                await asyncio.sleep(0.05)

    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return time.perf_counter() - started, acks


def bench_gateway(traces: int, concurrency: int) -> float:
    pipeline = Pipeline()
    ensure_topics(BOOTSTRAP, (pipeline.input_topic, pipeline.dlq_topic), partitions=4)
    bodies = requests_of(traces, per_request=8)
    with running(pipeline, "gateway"):
        elapsed_s, _ = asyncio.run(post_all(pipeline.endpoint, bodies, concurrency))
    return traces * SPANS_PER_TRACE / elapsed_s


async def wait_rows(tenant: str, expected: int, timeout_s: float) -> None:
    import asyncpg

    conn = await asyncpg.connect(DATABASE_URL)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            count = await conn.fetchval(
                "SELECT count(*) FROM llm_spans WHERE tenant = $1", tenant
            )
            if count >= expected:
                return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"only {count} of {expected} spans reached PostgreSQL")
    finally:
        await conn.close()


async def delete_tenant(tenant: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(DATABASE_URL)
    try:
        await conn.execute("DELETE FROM llm_spans WHERE tenant = $1", tenant)
    finally:
        await conn.close()


async def latencies_and_span(
    tenant: str, request_of_trace: dict[str, int], acks: list[float]
) -> tuple[list[float], float]:
    import asyncpg

    conn = await asyncpg.connect(DATABASE_URL)
    try:
        rows = await conn.fetch(
            "SELECT trace_id, extract(epoch FROM max(written_at)) AS visible "
            "FROM llm_spans WHERE tenant = $1 GROUP BY trace_id",
            tenant,
        )
        last = await conn.fetchval(
            "SELECT extract(epoch FROM max(written_at)) FROM llm_spans"
            " WHERE tenant = $1",
            tenant,
        )
    finally:
        await conn.close()
    await delete_tenant(tenant)
    latencies = [
        max(0.0, float(row["visible"]) - acks[request_of_trace[row["trace_id"]]])
        for row in rows
    ]
    return latencies, float(last)


def bench_end_to_end(traces: int, concurrency: int) -> tuple[float, float, float]:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    pipeline = Pipeline()
    tenant = f"bench-{uuid.uuid4().hex[:8]}"
    ensure_topics(
        BOOTSTRAP,
        (pipeline.input_topic, pipeline.spans_topic, pipeline.dlq_topic),
        partitions=4,
    )
    bodies = requests_of(traces, per_request=8, tenant=tenant)
    request_of_trace = {}
    for index, body in enumerate(bodies):
        for rs in ExportTraceServiceRequest.FromString(body).resource_spans:
            request_of_trace[rs.scope_spans[0].spans[0].trace_id.hex()] = index
    warmup = f"{tenant}-warmup"
    with running(pipeline, "gateway", "streams", "sink"):
        # Measure from the moment every consumer holds its partitions.
        asyncio.run(post_all(pipeline.endpoint, requests_of(8, 8, warmup), 1))
        asyncio.run(wait_rows(warmup, 8 * SPANS_PER_TRACE, timeout_s=120))
        first_send = time.time()
        _, acks = asyncio.run(post_all(pipeline.endpoint, bodies, concurrency))
        asyncio.run(wait_rows(tenant, traces * SPANS_PER_TRACE, timeout_s=300))
    latencies, last_visible = asyncio.run(
        latencies_and_span(tenant, request_of_trace, acks)
    )
    asyncio.run(delete_tenant(warmup))
    throughput = traces * SPANS_PER_TRACE / (last_visible - first_send)
    quantiles = statistics.quantiles(latencies, n=100)
    return throughput, quantiles[49], quantiles[98]


def _span_batches(traces: int, tenant: str) -> list[tuple[str, bytes]]:
    from streams.decode import Source, decode_message

    out: list[tuple[str, bytes]] = []
    for offset, body in enumerate(requests_of(traces, per_request=8, tenant=tenant)):
        out += decode_message(body, None, Source("bench", 0, offset)).batches
    return out


def _fill_topic(topic: str, batches: list[tuple[str, bytes]]) -> None:
    from confluent_kafka import Producer

    from llmobs.kafka import producer_config

    ensure_topics(BOOTSTRAP, (topic,), partitions=4)
    producer = Producer(producer_config(BOOTSTRAP))
    for key, value in batches:
        while True:
            try:
                producer.produce(topic, key=key.encode(), value=value)
                break
            except BufferError:
                producer.poll(0.1)
    if producer.flush(60):
        raise RuntimeError(f"records not acknowledged by {topic}")


async def _drain(sink: Any, done: Any, expected: int) -> float:
    """Run ``sink`` until ``done()`` reaches ``expected`` and it closed; seconds."""
    stop = asyncio.Event()
    task = asyncio.create_task(sink.run(stop))
    started = time.perf_counter()
    while done() < expected:
        if task.done():
            task.result()
            raise RuntimeError(f"sink stopped after {done()} of {expected} spans")
        await asyncio.sleep(0.05)
    # Closing is part of the work: the archive writes its files then.
    stop.set()
    await task
    return time.perf_counter() - started


def bench_tempo(traces: int) -> float:
    """Spans/s from llm.spans records to the local Jaeger over OTLP/HTTP."""
    from sinks.tempo.settings import TempoSettings
    from sinks.tempo.worker import TempoSink

    run_id = uuid.uuid4().hex[:8]
    topic = f"bench-{run_id}-llm.spans.sampled"
    _fill_topic(topic, _span_batches(traces, f"bench-{run_id}"))
    values: dict[str, Any] = {
        "kafka_bootstrap": BOOTSTRAP,
        "sampled_topic": topic,
        "group_id": f"bench-{run_id}-tempo",
        "otlp_endpoint": JAEGER_OTLP,
    }
    sink = TempoSink(TempoSettings(**values))
    total = traces * SPANS_PER_TRACE
    elapsed_s = asyncio.run(_drain(sink, lambda: sink.handler.exported_spans, total))
    return total / elapsed_s


def bench_archive(traces: int) -> tuple[float, float]:
    """Spans/s into Parquet files in a temporary folder, and bytes per span."""
    import tempfile

    from sinks.archive.settings import ArchiveSettings
    from sinks.archive.worker import ArchiveSink

    run_id = uuid.uuid4().hex[:8]
    topic = f"bench-{run_id}-llm.spans"
    _fill_topic(topic, _span_batches(traces, f"bench-{run_id}"))
    total = traces * SPANS_PER_TRACE
    with tempfile.TemporaryDirectory(prefix="llmobs-archive-") as folder:
        values: dict[str, Any] = {
            "kafka_bootstrap": BOOTSTRAP,
            "spans_topic": topic,
            "group_id": f"bench-{run_id}-archive",
            "archive_url": folder,
            # One file per partition and hour, as in production.
            "max_file_bytes": 256 * 1024 * 1024,
        }
        sink = ArchiveSink(ArchiveSettings(**values))
        # Counts spans buffered; the files are written when the sink closes.
        h = sink.handler
        elapsed_s = asyncio.run(
            _drain(sink, lambda: sum(f.rows.count for f in h._open.values()), total)
        )
    return total / elapsed_s, h.bytes_written / max(1, h.archived_spans)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--traces", type=int, default=4000, help="traces per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()

    rows: list[tuple[str, str, str]] = []

    decode = [bench_decode(args.traces) for _ in range(args.repeat)]
    rows.append(
        (
            "decode + normalize (in-process)",
            f"{statistics.median(decode):,.0f}",
            "spans/s",
        )
    )

    enrichment = [bench_enrichment(args.traces) for _ in range(args.repeat)]
    rows.append(
        (
            "cost enrichment (in-process)",
            f"{statistics.median(enrichment):,.0f}",
            "spans/s",
        )
    )

    sampler = [bench_sampler(args.traces) for _ in range(args.repeat)]
    rows.append(
        (
            "tail sampler (in-process)",
            f"{statistics.median(s[0] for s in sampler):,.0f}",
            "spans/s",
        )
    )
    rows.append(
        (
            "tail sampler memory per buffered span",
            f"{statistics.median(s[1] for s in sampler):,.0f}",
            "bytes",
        )
    )

    gateway = [bench_gateway(args.traces, args.concurrency) for _ in range(args.repeat)]
    rows.append(
        (
            "gateway OTLP/HTTP -> Kafka acked",
            f"{statistics.median(gateway):,.0f}",
            "spans/s",
        )
    )

    runs = [bench_end_to_end(args.traces, args.concurrency) for _ in range(args.repeat)]
    rows.append(
        (
            "end to end gateway -> PostgreSQL",
            f"{statistics.median(r[0] for r in runs):,.0f}",
            "spans/s",
        )
    )
    rows.append(
        (
            "ack -> row latency p50",
            f"{statistics.median(r[1] for r in runs) * 1000:,.0f}",
            "ms",
        )
    )
    rows.append(
        (
            "ack -> row latency p99",
            f"{statistics.median(r[2] for r in runs) * 1000:,.0f}",
            "ms",
        )
    )

    tempo = [bench_tempo(args.traces) for _ in range(args.repeat)]
    rows.append(
        (
            "Tempo sink llm.spans -> OTLP/HTTP (Jaeger)",
            f"{statistics.median(tempo):,.0f}",
            "spans/s",
        )
    )
    archive = [bench_archive(args.traces) for _ in range(args.repeat)]
    rows.append(
        (
            "archive sink llm.spans -> Parquet (folder)",
            f"{statistics.median(a[0] for a in archive):,.0f}",
            "spans/s",
        )
    )
    rows.append(
        (
            "archive Parquet size",
            f"{statistics.median(a[1] for a in archive):,.0f}",
            "bytes/span",
        )
    )

    print()
    print(
        f"LLM Observatory benchmark: {os.cpu_count()} cores, {args.traces} traces "
        f"x {SPANS_PER_TRACE} spans per run, median of {args.repeat} runs"
    )
    width = max(len(r[0]) for r in rows)
    print(f"{'stage'.ljust(width)}  {'value':>12}  unit")
    print(f"{'-' * width}  {'-' * 12}  -------")
    for name, value, unit in rows:
        print(f"{name.ljust(width)}  {value:>12}  {unit}")


if __name__ == "__main__":
    main()
