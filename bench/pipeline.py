"""Benchmarks of the pipeline processes against the real local services."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid

from bench.common import BOOTSTRAP, DATABASE_URL, SPANS_PER_TRACE, requests_of
from bench.processes import Pipeline, running
from llmobs.topics import ensure_topics


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


async def wait_metrics(tenant: str, expected: int, timeout_s: float) -> float:
    """Wait until llm_metrics_1m counts ``expected`` requests; when (epoch s)."""
    import asyncpg

    conn = await asyncpg.connect(DATABASE_URL)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            counted = await conn.fetchval(
                "SELECT coalesce(sum(requests), 0) FROM llm_metrics_1m"
                " WHERE tenant = $1",
                tenant,
            )
            if counted >= expected:
                return time.time()
            await asyncio.sleep(0.2)
        raise RuntimeError(f"only {counted} of {expected} requests in llm_metrics_1m")
    finally:
        await conn.close()


def bench_metrics_latency(traces: int, concurrency: int) -> float:
    """Seconds from the last request's ack to its minute in llm_metrics_1m.

    Windows close a grace period after their minute ends, so this is at most
    window + grace + the sink's flush, and at least grace + flush.
    """
    pipeline = Pipeline()
    tenant = f"bench-{uuid.uuid4().hex[:8]}"
    ensure_topics(
        BOOTSTRAP,
        (
            pipeline.input_topic,
            pipeline.spans_topic,
            pipeline.dlq_topic,
            pipeline.sampled_topic,
            pipeline.metrics_topic,
            pipeline.alerts_topic,
        ),
        partitions=4,
    )
    bodies = requests_of(traces, per_request=8, tenant=tenant)
    with running(pipeline, "gateway", "streams", "sink-metrics"):
        _, acks = asyncio.run(post_all(pipeline.endpoint, bodies, concurrency))
        model_requests = traces * (SPANS_PER_TRACE - 1)
        visible = asyncio.run(wait_metrics(tenant, model_requests, timeout_s=240))
    return visible - max(acks)
