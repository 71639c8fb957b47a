"""Kafka client settings shared by every process."""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import KafkaError

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
# syslog severity: librdkafka's own log keeps only critical conditions; the
# errors it would repeat at every reconnection come once through error_cb.
LIBRDKAFKA_LOG_LEVEL = 2

log = logging.getLogger(__name__)


def report_error(error: KafkaError) -> None:
    """librdkafka's error callback: a warning, throttled like every repeat."""
    log.warning("kafka: %s", error.str())


def client_config(bootstrap: str) -> dict[str, Any]:
    """Settings every confluent-kafka client takes: the brokers and logging."""
    return {
        "bootstrap.servers": bootstrap,
        "logger": logging.getLogger("librdkafka"),
        "log_level": LIBRDKAFKA_LOG_LEVEL,
        "error_cb": report_error,
    }


def producer_config(bootstrap: str, **overrides: Any) -> dict[str, Any]:
    """confluent-kafka producer settings for acknowledged, batched delivery."""
    config: dict[str, Any] = {
        **client_config(bootstrap),
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
        "batch.num.messages": 10000,
        "compression.type": "lz4",
        "message.max.bytes": 16 * 1024 * 1024,
    }
    config.update(overrides)
    return config


def consumer_config(bootstrap: str, group_id: str, **overrides: Any) -> dict[str, Any]:
    """confluent-kafka consumer settings for commit-after-write processing."""
    config: dict[str, Any] = {
        **client_config(bootstrap),
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        "fetch.max.bytes": 64 * 1024 * 1024,
        "max.partition.fetch.bytes": 16 * 1024 * 1024,
    }
    config.update(overrides)
    return config
