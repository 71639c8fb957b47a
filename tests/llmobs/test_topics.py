"""Topic creation on the real local broker."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from llmobs.errors import ConfigError
from llmobs.topics import MAX_MESSAGE_BYTES, ensure_topics, partition_count
from llmobs.topics_cli import TopicSettings
from tests.conftest import unique


@pytest.mark.integration
def test_new_topics_take_records_larger_than_the_broker_default(
    kafka_bootstrap: str,
) -> None:
    name = unique("topic-size")

    ensure_topics(kafka_bootstrap, (name,), partitions=2)

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    resource = ConfigResource(ConfigResource.Type.TOPIC, name)
    configs = admin.describe_configs([resource])[resource].result(timeout=10)
    assert int(configs["max.message.bytes"].value) == MAX_MESSAGE_BYTES
    assert MAX_MESSAGE_BYTES > 1024 * 1024
    assert partition_count(kafka_bootstrap, name) == 2


@pytest.mark.parametrize("name", ["topic_partitions", "topic_replication_factor"])
def test_topic_counts_below_one_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        TopicSettings(**{name: 0}).validate()  # type: ignore[arg-type]
