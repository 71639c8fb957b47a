"""Topic names of the pipeline and their creation on the broker."""

from __future__ import annotations

import logging

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from llmobs.errors import RetriableStageError
from llmobs.kafka import client_config

log = logging.getLogger(__name__)

OTLP_SPANS = "otlp_spans"
SPANS = "llm.spans"
SPANS_SAMPLED = "llm.spans.sampled"
METRICS_1M = "llm.metrics.1m"
DLQ = "llm.dlq"
ALERTS = "llm.alerts"

ALL = (OTLP_SPANS, SPANS, SPANS_SAMPLED, METRICS_1M, DLQ, ALERTS)

# Kafka headers the pipeline reads and writes.
HEADER_TENANT = "tenant"
HEADER_RECEIVED_NS = "llmobs.received_ns"
# Set by the Collector's kafkaexporter: traces, metrics or logs.
HEADER_SIGNAL = "otelcol.signal"
HEADER_DLQ_REASON = "llmobs.dlq.reason"
HEADER_DLQ_DETAIL = "llmobs.dlq.detail"
HEADER_DLQ_TOPIC = "llmobs.dlq.source_topic"
HEADER_DLQ_PARTITION = "llmobs.dlq.source_partition"
HEADER_DLQ_OFFSET = "llmobs.dlq.source_offset"
HEADER_DLQ_CONTENT_TYPE = "llmobs.dlq.content_type"


# Largest record a pipeline topic takes. A decoded trace travels as records
# of at most 4 MiB; the broker's default (1 MiB) would refuse the bigger ones.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


def ensure_topics(
    bootstrap: str,
    names: tuple[str, ...] = ALL,
    partitions: int = 4,
    timeout_s: float = 30.0,
    replication_factor: int = 1,
) -> None:
    """Create the missing topics; existing ones are left as they are."""
    admin = AdminClient(client_config(bootstrap))
    try:
        existing = set(admin.list_topics(timeout=timeout_s).topics)
    except KafkaException as exc:
        raise RetriableStageError(f"kafka at {bootstrap} unreachable: {exc}") from exc
    wanted = [
        NewTopic(
            name,
            num_partitions=partitions,
            replication_factor=replication_factor,
            config={"max.message.bytes": str(MAX_MESSAGE_BYTES)},
        )
        for name in names
        if name not in existing
    ]
    if not wanted:
        return
    for name, future in admin.create_topics(
        wanted, operation_timeout=timeout_s
    ).items():
        try:
            future.result()
            log.info(
                "created topic %s with %d partitions, replication factor %d",
                name,
                partitions,
                replication_factor,
            )
        except KafkaException as exc:
            if exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise RetriableStageError(f"cannot create topic {name}: {exc}") from exc


def partition_count(bootstrap: str, topic: str, timeout_s: float = 30.0) -> int:
    """How many partitions ``topic`` has on the broker."""
    admin = AdminClient(client_config(bootstrap))
    try:
        metadata = admin.list_topics(topic, timeout=timeout_s)
    except KafkaException as exc:
        raise RetriableStageError(f"kafka at {bootstrap} unreachable: {exc}") from exc
    found = metadata.topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        raise RetriableStageError(f"topic {topic} not found on {bootstrap}")
    return len(found.partitions)
