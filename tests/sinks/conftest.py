"""Fixtures to produce SpanBatch records and run the sink in-process."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytest
from confluent_kafka import Producer

from llmobs.kafka import producer_config
from sinks.settings import SinkSettings


@pytest.fixture
def produce(kafka_bootstrap: str) -> Callable[..., None]:
    """Produce raw values (keyed by position) to a topic, acknowledged."""

    def send(topic: str, values: Iterable[bytes], partition: int | None = None) -> None:
        producer = Producer(producer_config(kafka_bootstrap))
        for i, value in enumerate(values):
            kwargs = {} if partition is None else {"partition": partition}
            producer.produce(topic, key=str(i).encode(), value=value, **kwargs)
        if producer.flush(30) != 0:
            raise RuntimeError("records not acknowledged")

    return send


@pytest.fixture
def sink_settings(
    kafka_bootstrap: str, database_url: str, group_id: str
) -> Callable[..., SinkSettings]:
    """Settings for an in-process sink that stops once the topic is drained."""

    def make(topic: str, **overrides: Any) -> SinkSettings:
        values: dict[str, Any] = {
            "kafka_bootstrap": kafka_bootstrap,
            "spans_topic": topic,
            "group_id": group_id,
            "database_url": database_url,
            "flush_interval_s": 0.2,
            "max_idle_s": 3.0,
            "db_retry_deadline_s": 5.0,
        }
        values.update(overrides)
        return SinkSettings(**values)

    return make
