"""Kafka client settings shared by every process."""

from __future__ import annotations

from typing import Any

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"


def producer_config(bootstrap: str, **overrides: Any) -> dict[str, Any]:
    """confluent-kafka producer settings for acknowledged, batched delivery."""
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
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
        "bootstrap.servers": bootstrap,
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        "fetch.max.bytes": 64 * 1024 * 1024,
        "max.partition.fetch.bytes": 16 * 1024 * 1024,
    }
    config.update(overrides)
    return config
