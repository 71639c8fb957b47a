"""Fixtures for the gateway tests: an in-process gateway and a topic reader."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

from ingest.server import Gateway
from ingest.settings import GatewaySettings
from llmobs.kafka import consumer_config

START_NS = 1_700_000_000_000_000_000

StartGateway = Callable[..., Awaitable[Gateway]]
ReadTopic = Callable[..., Awaitable[list[Message]]]


@pytest.fixture
def closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(name="build_request")
def build_request_fixture() -> Callable[..., ExportTraceServiceRequest]:
    return build_request


def build_request(
    traces: list[bytes], spans_per_trace: int = 2, service: str = "svc"
) -> ExportTraceServiceRequest:
    """One resource, one scope, ``spans_per_trace`` valid spans per trace id."""
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add(schema_url="https://opentelemetry.io/schemas/1.26")
    rs.resource.attributes.add(key="service.name").value.string_value = service
    ss = rs.scope_spans.add(schema_url="https://opentelemetry.io/schemas/1.26")
    ss.scope.name = "test-scope"
    for t, trace_id in enumerate(traces):
        for s in range(spans_per_trace):
            ss.spans.add(
                trace_id=trace_id,
                span_id=(t * 100 + s + 1).to_bytes(8, "big"),
                name=f"span-{t}-{s}",
                start_time_unix_nano=START_NS,
                end_time_unix_nano=START_NS + 1_000,
            )
    return request


@pytest.fixture
async def start_gateway(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> AsyncIterator[StartGateway]:
    """Factory: a gateway on free local ports with a fresh topic and DLQ."""
    running: list[Gateway] = []

    async def start(**overrides: object) -> Gateway:
        values: dict[str, object] = {
            "http_host": "127.0.0.1",
            "http_port": 0,
            "grpc_host": "127.0.0.1",
            "grpc_port": 0,
            "kafka_bootstrap": kafka_bootstrap,
            "input_topic": new_topic("otlp-spans"),
            "dlq_topic": new_topic("dlq", partitions=1),
            "shutdown_grace_s": 2.0,
        }
        values.update(overrides)
        settings = GatewaySettings(**values)  # type: ignore[arg-type]
        settings.validate()
        gateway = Gateway(settings)
        await gateway.start()
        running.append(gateway)
        return gateway

    yield start

    for gateway in running:
        await gateway.stop()


@pytest.fixture
def read_topic(kafka_bootstrap: str, group_id: str) -> ReadTopic:
    """Read ``count`` messages of a topic from the beginning, or fail on timeout."""

    def read(topic: str, count: int, timeout_s: float) -> list[Message]:
        consumer = Consumer(consumer_config(kafka_bootstrap, group_id))
        try:
            metadata = consumer.list_topics(topic, timeout=10)
            partitions = metadata.topics[topic].partitions
            consumer.assign(
                [TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions]
            )
            out: list[Message] = []
            end = time.monotonic() + timeout_s
            while len(out) < count and time.monotonic() < end:
                message = consumer.poll(0.2)
                if message is None:
                    continue
                if message.error():
                    raise AssertionError(f"consume error: {message.error()}")
                out.append(message)
            return out
        finally:
            consumer.close()

    async def read_async(
        topic: str, count: int, timeout_s: float = 15.0
    ) -> list[Message]:
        return await asyncio.to_thread(read, topic, count, timeout_s)

    return read_async
