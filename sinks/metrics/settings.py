"""Settings of ``llmobs sink-metrics``."""

from __future__ import annotations

from llmobs import topics
from llmobs.errors import ConfigError
from llmobs.kafka import DEFAULT_BOOTSTRAP
from llmobs.settings import setting, settings_class
from sinks.settings import DEFAULT_DATABASE_URL, SinkEndpoint, check_database_url


@settings_class
class MetricsSinkSettings(SinkEndpoint):
    """llm.metrics.1m into PostgreSQL llm_metrics_1m, Redis counters, alerts."""

    config_section = "sink_metrics"

    kafka_bootstrap: str = setting(DEFAULT_BOOTSTRAP, "Kafka bootstrap servers")
    metrics_topic: str = setting(topics.METRICS_1M, "topic of metric windows")
    alerts_topic: str = setting(topics.ALERTS, "topic budget alerts go to")
    group_id: str = setting("llmobs-sink-metrics", "Kafka consumer group")
    dlq_topic: str = setting(topics.DLQ, "dead-letter topic for unreadable records")
    database_url: str = setting(
        DEFAULT_DATABASE_URL, "PostgreSQL connection URL", secret=True
    )
    redis_url: str = setting(
        "redis://127.0.0.1:6379/0", "Redis URL of the live counters", secret=True
    )
    redis_prefix: str = setting("llmobs", "prefix of every Redis key written")
    budgets_file: str | None = setting(None, "YAML file of budget rules (unset: none)")
    live_ttl_s: int = setting(40 * 86_400, "lifetime of live counters and markers")
    contributions_retention_days: float = setting(
        14.0,
        "keep record identities this long (plain PostgreSQL); must exceed the "
        "retention of the metrics topic, or a replay past it counts twice",
    )
    max_batch_records: int = setting(2000, "records written per transaction")
    flush_interval_s: float = setting(1.0, "longest wait before writing a batch")
    max_idle_s: float | None = setting(
        None, "stop after this long without new records (unset: run forever)"
    )
    migrate_on_start: bool = setting(True, "apply pending schema migrations first")

    def validate(self) -> None:
        check_database_url(self.database_url)
        if not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError("setting redis_url must be a redis:// URL")
        if self.contributions_retention_days < 1:
            raise ConfigError("setting contributions_retention_days must be at least 1")
        if self.max_batch_records < 1:
            raise ConfigError("setting max_batch_records must be at least 1")
        if self.flush_interval_s <= 0:
            raise ConfigError("setting flush_interval_s must be positive")
        if self.live_ttl_s < 86_400 * 32:
            raise ConfigError("setting live_ttl_s must cover a month (2764800)")
        if self.max_idle_s is not None and self.max_idle_s <= 0:
            raise ConfigError("setting max_idle_s must be positive when set")
