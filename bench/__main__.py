"""``make bench``: throughput and latency of the pipeline, printed as a table.

Stages measured against the real local services:
- decode: the Faust stage's per-message work in-process (no Kafka);
- gateway: OTLP/HTTP requests acknowledged (Kafka delivery confirmed);
- end to end: gateway -> Kafka -> streams -> Kafka -> sink -> PostgreSQL,
  with the latency from each request's acknowledgement to its rows being
  written (``llm_spans.written_at``).
Each throughput figure is the median of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid

from bench.processes import Pipeline, running
from llmobs import synthetic
from llmobs.topics import ensure_topics

DATABASE_URL = os.environ.get(
    "LLMOBS_DATABASE_URL", "postgresql://llmobs:llmobs@127.0.0.1:5432/llmobs"
)
BOOTSTRAP = os.environ.get("LLMOBS_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
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
