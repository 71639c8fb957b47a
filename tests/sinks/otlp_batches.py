"""SpanBatch records made by the real decode stage from synthetic OTLP traces."""

from __future__ import annotations

import random
from collections.abc import Iterable

from confluent_kafka import Producer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

from llmobs import synthetic
from llmobs.kafka import producer_config
from streams.decode import Source, decode_message


def traces(
    count: int, tenant: str, start_ns: int | None = None, seed: int = 11
) -> list[ExportTraceServiceRequest]:
    """``count`` one-trace requests of ``tenant``; a link on every chat span."""
    rng = random.Random(seed)
    out = []
    for index in range(count):
        request = synthetic.llm_trace(
            calls=3,
            tenant=tenant,
            rng=rng,
            error=index % 5 == 0,
            start_ns=None if start_ns is None else start_ns + index * 1_000_000,
        )
        spans = request.resource_spans[0].scope_spans[0].spans
        link = spans[1].links.add()
        link.trace_id = synthetic.new_trace_id()
        link.span_id = synthetic.new_span_id()
        link.attributes.append(synthetic.kv("link.kind", "follows"))
        spans[1].events[0].attributes.append(synthetic.kv("gen_ai.choice.index", 0))
        out.append(request)
    return out


def span_batches(
    requests: Iterable[ExportTraceServiceRequest],
) -> list[tuple[str, bytes]]:
    """(trace id, encoded SpanBatch) for each trace, as llm.spans carries them."""
    out: list[tuple[str, bytes]] = []
    for offset, request in enumerate(requests):
        decoded = decode_message(
            request.SerializeToString(), None, Source("test", 0, offset)
        )
        if decoded.dead_letters:
            raise RuntimeError(f"decode refused a test trace: {decoded.dead_letters}")
        out += decoded.batches
    return out


def produce(bootstrap: str, topic: str, batches: list[tuple[str, bytes]]) -> None:
    producer = Producer(producer_config(bootstrap))
    for key, value in batches:
        producer.produce(topic, key=key.encode(), value=value)
    if producer.flush(30) != 0:
        raise RuntimeError("records not acknowledged")
