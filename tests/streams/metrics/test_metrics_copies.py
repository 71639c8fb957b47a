"""The stream worker counts each span of llm.spans once, whatever copies of it
the topic holds: in open windows, in closed ones, and across a SIGKILL."""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request
import uuid
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

import schemas
from bench.processes import Pipeline, running
from llmobs import synthetic
from llmobs.kafka import producer_config
from llmobs.topics import ensure_topics
from streams.decode import Source, decode_message
from streams.metrics.window import identity

pytestmark = pytest.mark.integration

CALLS = 3  # chat spans a trace; its invoke_agent root is no model request


def records_of(
    pipe: Pipeline, traces: list[ExportTraceServiceRequest], first_offset: int
) -> list[tuple[str, bytes]]:
    """llm.spans records of ``traces``, as the decode stage makes them from
    input read at ``first_offset`` on: a second call, a second record each."""
    out = []
    for i, trace in enumerate(traces):
        source = Source(pipe.input_topic, 0, first_offset + i)
        decoded = decode_message(trace.SerializeToString(), None, source)
        out += decoded.batches
    return out


def produce(bootstrap: str, topic: str, records: list[tuple[str, bytes]]) -> None:
    producer = Producer(producer_config(bootstrap))
    for key, value in records:
        producer.produce(topic, key=key.encode(), value=value)
    assert producer.flush(30) == 0


def counter(pipe: Pipeline, name: str) -> int:
    with urllib.request.urlopen(
        f"http://127.0.0.1:{pipe.web_port}/metrics", timeout=5
    ) as page:
        text = page.read().decode()
    found = re.search(rf"^{name} (\d+)$", text, re.MULTILINE)
    return int(found.group(1)) if found else 0


async def until_read(pipe: Pipeline, spans: int) -> tuple[int, int]:
    """(counted, skipped as copies) once ``spans`` model requests were read."""
    deadline = time.monotonic() + 90
    while True:
        counted = counter(pipe, "llmobs_metrics_spans_counted_total")
        skipped = counter(pipe, "llmobs_metrics_duplicate_spans_total")
        if counted + skipped >= spans or time.monotonic() > deadline:
            return counted, skipped
        await asyncio.sleep(0.5)


def emitted(bootstrap: str, topic: str, tenant: str) -> dict[str, dict[str, Any]]:
    """The distinct metric records of ``tenant`` on ``topic``, by identity."""
    codec = schemas.codec("metric_window")
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"read-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    records: dict[str, dict[str, Any]] = {}
    try:
        idle_s = 0.0
        while idle_s < 3:
            messages = consumer.consume(500, timeout=1)
            idle_s = 0.0 if messages else idle_s + 1
            for message in messages:
                if message.error() is None:
                    record = codec.decode(message.value())
                    if record["tenant"] == tenant:
                        records[identity(record)] = record
    finally:
        consumer.close()
    return records


async def requests_counted(
    bootstrap: str, topic: str, tenant: str, want: int, timeout_s: float
) -> int:
    """The requests the windows of ``tenant`` add up to, once ``want`` or
    ``timeout_s`` is reached."""
    deadline = time.monotonic() + timeout_s
    while True:
        records = await asyncio.to_thread(emitted, bootstrap, topic, tenant)
        got = sum(r["requests"] for r in records.values())
        if got >= want or time.monotonic() > deadline:
            return got
        await asyncio.sleep(1)


async def test_copies_in_llm_spans_count_once_across_a_kill(
    kafka_bootstrap: str,
) -> None:
    pipe = Pipeline(
        extra_env={
            "LLMOBS_WINDOW_S": "10",
            "LLMOBS_GRACE_S": "1",
            "LLMOBS_CLOSE_TICK_S": "0.5",
        }
    )
    ensure_topics(kafka_bootstrap, pipe.topics, partitions=3)
    tenant = f"copies-{uuid.uuid4().hex[:8]}"
    # Spans of closed windows (late from the start), and of open ones.
    past_ns = time.time_ns() - 120 * 10**9
    late = [synthetic.llm_trace(tenant=tenant, start_ns=past_ns) for _ in range(6)]
    recent = [synthetic.llm_trace(tenant=tenant) for _ in range(6)]
    fresh = [synthetic.llm_trace(tenant=tenant) for _ in range(4)]
    seen = late + recent

    with running(pipe, "streams") as (worker,):
        # Every trace in two llm.spans records.
        produce(
            kafka_bootstrap,
            pipe.spans_topic,
            records_of(pipe, seen, 0) + records_of(pipe, seen, 100),
        )
        read = await until_read(pipe, 2 * len(seen) * CALLS)
        worker.kill()
        worker.wait()

    with running(pipe, "streams"):
        # A third copy once restarted, their windows closed or not, and
        # traces not seen before.
        produce(
            kafka_bootstrap,
            pipe.spans_topic,
            records_of(pipe, seen, 200) + records_of(pipe, fresh, 300),
        )
        want = (len(seen) + len(fresh)) * CALLS
        got = await requests_counted(
            kafka_bootstrap, pipe.metrics_topic, tenant, want, timeout_s=120
        )
        # Nothing more comes: a copy makes no correction.
        await asyncio.sleep(3)
        again = await requests_counted(
            kafka_bootstrap, pipe.metrics_topic, tenant, want, timeout_s=0
        )

    assert read == (len(seen) * CALLS, len(seen) * CALLS)
    assert got == want
    assert again == want
