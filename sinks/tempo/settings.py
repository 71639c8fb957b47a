"""Settings of ``llmobs sink-tempo``."""

from __future__ import annotations

from urllib.parse import urlsplit

from llmobs import topics
from llmobs.errors import ConfigError
from llmobs.kafka import DEFAULT_BOOTSTRAP
from llmobs.settings import setting, settings_class
from sinks.settings import SinkEndpoint


@settings_class
class TempoSettings(SinkEndpoint):
    """The Tempo sink: llm.spans.sampled as OTLP/HTTP to Tempo's distributor."""

    config_section = "tempo"

    kafka_bootstrap: str = setting(DEFAULT_BOOTSTRAP, "Kafka bootstrap servers")
    sampled_topic: str = setting(
        topics.SPANS_SAMPLED, "topic of the span batches to export"
    )
    group_id: str = setting("llmobs-sink-tempo", "Kafka consumer group")
    dlq_topic: str = setting(topics.DLQ, "dead-letter topic for rejected records")
    otlp_endpoint: str = setting(
        "http://127.0.0.1:24318",
        "OTLP/HTTP base URL of the trace backend (/v1/traces is appended)",
    )
    tenant_header: str = setting(
        "X-Scope-OrgID", "header carrying the tenant (empty: none sent)"
    )
    auth_token: str = setting("", "bearer token for the backend", secret=True)
    compression: str = setting("gzip", "request body compression: gzip or none")
    max_batch_spans: int = setting(2000, "spans per export request, at most")
    flush_interval_s: float = setting(1.0, "longest wait before exporting a batch")
    request_timeout_s: float = setting(10.0, "timeout of one export request")
    retry_deadline_s: float = setting(
        120.0,
        "how long a batch is retried on 429/502/503/504 and network errors "
        "before it is held, uncommitted, and tried again after a back-off",
    )
    max_idle_s: float | None = setting(
        None, "stop after this long without new records (unset: run forever)"
    )

    @property
    def traces_url(self) -> str:
        base = self.otlp_endpoint.rstrip("/")
        return base if base.endswith("/v1/traces") else base + "/v1/traces"

    def validate(self) -> None:
        """Reject values the sink cannot run with, naming the key."""
        if urlsplit(self.otlp_endpoint).scheme not in ("http", "https"):
            raise ConfigError("otlp_endpoint must be an http:// or https:// URL")
        if self.compression not in ("gzip", "none"):
            raise ConfigError("compression must be gzip or none")
        if self.max_batch_spans < 1:
            raise ConfigError("max_batch_spans must be at least 1")
        if self.flush_interval_s <= 0:
            raise ConfigError("flush_interval_s must be positive")
        if self.request_timeout_s <= 0:
            raise ConfigError("request_timeout_s must be positive")
        if self.retry_deadline_s < 0:
            raise ConfigError("retry_deadline_s must not be negative")
        if self.max_idle_s is not None and self.max_idle_s <= 0:
            raise ConfigError("max_idle_s must be positive when set")
