"""SpanProducer against the real local Kafka: delivery, dead letters, failures."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import pytest
from relay import relay

from ingest.metrics import GatewayMetrics
from ingest.producer import (
    HEADER_DLQ_CONTENT_TYPE,
    DeliveryFailed,
    ProducerBusy,
    SpanProducer,
)
from ingest.settings import GatewaySettings
from llmobs.otlp import Rejection
from llmobs.topics import HEADER_DLQ_DETAIL, HEADER_DLQ_REASON, HEADER_TENANT

pytestmark = pytest.mark.integration


@pytest.fixture
async def make_producer() -> AsyncIterator[Callable[..., SpanProducer]]:
    started: list[SpanProducer] = []

    def make(**values: object) -> SpanProducer:
        producer = SpanProducer(GatewaySettings(**values), GatewayMetrics())  # type: ignore[arg-type]
        producer.start()
        started.append(producer)
        return producer

    yield make

    for producer in started:
        await producer.close(2.0)


async def test_send_returns_after_delivery_with_keys_and_headers(
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    read_topic: Callable[..., object],
    make_producer: Callable[..., SpanProducer],
) -> None:
    topic = new_topic("producer")
    producer = make_producer(kafka_bootstrap=kafka_bootstrap, input_topic=topic)
    messages = [(f"{i:032x}".encode(), f"value-{i}".encode()) for i in range(5)]

    await producer.send(messages, [(HEADER_TENANT, b"t1")])

    assert producer.inflight_bytes == 0
    got = await read_topic(topic, 5)
    assert sorted((m.key(), m.value()) for m in got) == messages
    assert all(dict(m.headers())[HEADER_TENANT] == b"t1" for m in got)


async def test_same_key_lands_in_one_partition(
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    read_topic: Callable[..., object],
    make_producer: Callable[..., SpanProducer],
) -> None:
    topic = new_topic("producer", partitions=4)
    producer = make_producer(kafka_bootstrap=kafka_bootstrap, input_topic=topic)
    key = b"0af7651916cd43dd8448eb211c80319c"

    for index in range(4):
        await producer.send([(key, str(index).encode())], [])

    got = await read_topic(topic, 4)
    assert len({m.partition() for m in got}) == 1
    assert [m.value() for m in got] == [b"0", b"1", b"2", b"3"]


async def test_dead_letter_carries_reason_headers(
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    read_topic: Callable[..., object],
    make_producer: Callable[..., SpanProducer],
) -> None:
    dlq = new_topic("dlq", partitions=1)
    producer = make_producer(kafka_bootstrap=kafka_bootstrap, dlq_topic=dlq)
    rejection = Rejection("invalid_trace_id", "trace id is all zero", 3, b"payload")

    producer.dead_letter(rejection, [(HEADER_TENANT, b"t9")])

    [message] = await read_topic(dlq, 1)
    headers = dict(message.headers())
    assert message.value() == b"payload"
    assert headers[HEADER_DLQ_REASON] == b"invalid_trace_id"
    assert headers[HEADER_DLQ_DETAIL] == b"trace id is all zero"
    assert headers[HEADER_DLQ_CONTENT_TYPE] == b"application/x-protobuf"
    assert headers[HEADER_TENANT] == b"t9"


async def test_unreachable_kafka_fails_delivery_and_frees_bytes(
    closed_port: int, make_producer: Callable[..., SpanProducer]
) -> None:
    producer = make_producer(
        kafka_bootstrap=f"127.0.0.1:{closed_port}", produce_timeout_s=0.5
    )

    with pytest.raises(DeliveryFailed):
        await producer.send([(b"k", b"v" * 100)], [])

    # librdkafka gives the message up at the same timeout, releasing its bytes.
    for _ in range(50):
        if producer.inflight_bytes == 0:
            break
        await asyncio.sleep(0.05)
    assert producer.inflight_bytes == 0


async def test_inflight_cap_refuses_while_bytes_await_confirmation(
    closed_port: int, make_producer: Callable[..., SpanProducer]
) -> None:

    producer = make_producer(
        kafka_bootstrap=f"127.0.0.1:{closed_port}",
        produce_timeout_s=2.0,
        max_inflight_bytes=150,
    )
    first = asyncio.create_task(producer.send([(b"k", b"v" * 100)], []))
    await asyncio.sleep(0.1)

    assert producer.inflight_bytes == 101
    with pytest.raises(ProducerBusy):
        await producer.send([(b"k", b"v" * 100)], [])
    with pytest.raises(DeliveryFailed):
        await first


async def test_an_unreachable_broker_is_reported_once_not_flooded(
    closed_port: int,
    make_producer: Callable[..., SpanProducer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    make_producer(kafka_bootstrap=f"127.0.0.1:{closed_port}")

    # librdkafka retries the connection several times a second meanwhile.
    await asyncio.sleep(3)

    from_librdkafka = [r for r in caplog.records if r.name == "librdkafka"]
    assert from_librdkafka == []
    warnings = [r for r in caplog.records if r.name == "ingest.producer"]
    assert 1 <= len(warnings) <= 4


async def test_while_every_broker_is_down_one_request_waits_the_rest_fail_at_once(
    closed_port: int, kafka_bootstrap: str, make_producer: Callable[..., SpanProducer]
) -> None:
    producer = make_producer(
        kafka_bootstrap=f"127.0.0.1:{closed_port}", produce_timeout_s=60.0
    )
    for _ in range(200):
        if producer.brokers_down:
            break
        await asyncio.sleep(0.05)
    assert producer.brokers_down

    probe = asyncio.create_task(producer.send([(b"k", b"probe")], []))
    await asyncio.sleep(0.1)
    with pytest.raises(DeliveryFailed, match="is down"):
        await producer.send([(b"k", b"refused")], [])
    assert not probe.done()

    host, port = kafka_bootstrap.rsplit(":", 1)
    relayed = await relay(closed_port, host, int(port))
    try:
        await asyncio.wait_for(probe, 60)
        assert not producer.brokers_down
        await producer.send([(b"k", b"accepted")], [])
    finally:
        relayed.close()
