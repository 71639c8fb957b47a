"""Settings of the stream worker (``llmobs streams``)."""

from __future__ import annotations

from llmobs import topics
from llmobs.kafka import DEFAULT_BOOTSTRAP
from llmobs.settings import setting, settings_class


@settings_class
class StreamSettings:
    config_section = "streams"

    kafka_bootstrap: str = setting(DEFAULT_BOOTSTRAP, "Kafka bootstrap servers")
    app_id: str = setting(
        "llmobs-streams",
        "Faust application id, also the consumer group and the prefix of the"
        " state topics: a new id reads the input topic again from its start",
    )
    input_topic: str = setting(topics.OTLP_SPANS, "topic of raw OTLP requests")
    spans_topic: str = setting(topics.SPANS, "topic of normalized span batches")
    dlq_topic: str = setting(topics.DLQ, "dead-letter topic for bad input")
    topic_partitions: int = setting(4, "partitions of the topics the app creates")
    topic_replication_factor: int = setting(
        1, "replicas of the topics the app creates, changelogs included"
    )
    batch_messages: int = setting(500, "input messages decoded per batch")
    batch_wait_s: float = setting(0.05, "longest wait to fill a batch")
    web_host: str = setting(
        "127.0.0.1", "address of the web and metrics endpoint (0.0.0.0 for all)"
    )
    web_port: int = setting(6066, "port of the worker's web and metrics endpoint")
    web_enabled: bool = setting(True, "serve /metrics and Faust's web views")
    data_dir: str = setting(".local/streams", "local state directory")
    prices_file: str | None = setting(
        None, "operator prices YAML: aliases, private prices, discounts"
    )

    def validate(self) -> None:
        from llmobs.errors import ConfigError

        if not 0 < self.web_port <= 65535:
            raise ConfigError(f"web_port: {self.web_port} is no port")
        if self.topic_replication_factor < 1:
            raise ConfigError("topic_replication_factor must be at least 1")
        if self.batch_messages < 1:
            raise ConfigError("batch_messages must be at least 1")
        if self.batch_wait_s <= 0:
            raise ConfigError("batch_wait_s must be positive")
        if self.prices_file is not None:
            from pathlib import Path

            from streams.cost import overrides

            # Read now so that a bad entry stops the start, naming itself.
            overrides.load(Path(self.prices_file))
