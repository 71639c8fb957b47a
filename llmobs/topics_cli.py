"""``llmobs topics``: create the pipeline's topics on the broker."""

from __future__ import annotations

import argparse

from llmobs import settings as config
from llmobs import topics
from llmobs.errors import ConfigError
from llmobs.kafka import DEFAULT_BOOTSTRAP
from llmobs.settings import setting, settings_class


@settings_class
class TopicSettings:
    config_section = "topics"

    kafka_bootstrap: str = setting(DEFAULT_BOOTSTRAP, "Kafka bootstrap servers")
    topic_partitions: int = setting(4, "partitions of each new topic")
    topic_replication_factor: int = setting(
        1, "replicas of each new topic (3 on a production cluster)"
    )

    def validate(self) -> None:
        for name in ("topic_partitions", "topic_replication_factor"):
            if getattr(self, name) < 1:
                raise ConfigError(f"setting {name} must be at least 1")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    config.add_flags(parser, TopicSettings)


def run(args: argparse.Namespace) -> int:
    settings = config.load(TopicSettings, args)
    topics.ensure_topics(
        settings.kafka_bootstrap,
        topics.ALL,
        partitions=settings.topic_partitions,
        replication_factor=settings.topic_replication_factor,
    )
    print(f"topics ready on {settings.kafka_bootstrap}: {', '.join(topics.ALL)}")
    return 0
