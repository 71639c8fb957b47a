"""What every benchmark shares: the services' addresses and synthetic load."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

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


def span_batches(traces: int, tenant: str) -> list[tuple[str, bytes]]:
    from streams.decode import Source, decode_message

    out: list[tuple[str, bytes]] = []
    for offset, body in enumerate(requests_of(traces, per_request=8, tenant=tenant)):
        out += decode_message(body, None, Source("bench", 0, offset)).batches
    return out


def fill_topic(topic: str, batches: list[tuple[str, bytes]]) -> None:
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


async def drain(sink: Any, done: Any, expected: int) -> float:
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
