"""Settings of the PostgreSQL sink, ``llmobs migrate`` and ``llmobs summary``."""

from __future__ import annotations

import dataclasses
from urllib.parse import urlsplit, urlunsplit

from llmobs import topics
from llmobs.errors import ConfigError
from llmobs.kafka import DEFAULT_BOOTSTRAP
from llmobs.settings import setting, settings_class

DEFAULT_DATABASE_URL = "postgresql://llmobs:llmobs@127.0.0.1:5432/llmobs"


@dataclasses.dataclass(frozen=True)
class SinkEndpoint:
    """The /metrics and /healthz endpoint of every sink worker."""

    metrics_address: str | None = setting(
        None,
        "host:port of the worker's /metrics and /healthz, e.g. 0.0.0.0:6067 "
        "(unset: not served)",
    )

    def __post_init__(self) -> None:
        if self.metrics_address is not None:
            parse_address("metrics_address", self.metrics_address)


def parse_address(name: str, value: str) -> tuple[str, int]:
    """``host:port`` as a pair; ConfigError naming the setting otherwise."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) <= 65535:
        raise ConfigError(f"setting {name}: expected host:port, got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


@settings_class
class SinkSettings(SinkEndpoint):
    """The sink worker: llm.spans into PostgreSQL llm_spans."""

    config_section = "sink"

    kafka_bootstrap: str = setting(DEFAULT_BOOTSTRAP, "Kafka bootstrap servers")
    spans_topic: str = setting(topics.SPANS, "topic of normalized span batches")
    group_id: str = setting("llmobs-sink-postgres", "Kafka consumer group")
    dlq_topic: str = setting(topics.DLQ, "dead-letter topic for unreadable records")
    database_url: str = setting(
        DEFAULT_DATABASE_URL, "PostgreSQL connection URL", secret=True
    )
    max_batch_spans: int = setting(5000, "spans written per database transaction")
    flush_interval_s: float = setting(1.0, "longest wait before writing a batch")
    max_idle_s: float | None = setting(
        None, "stop after this long without new records (unset: run forever)"
    )
    db_retry_deadline_s: float = setting(
        120.0, "how long a batch write is retried on transient database errors"
    )
    db_connect_timeout_s: float = setting(10.0, "timeout of one connection attempt")
    migrate_on_start: bool = setting(
        True, "apply pending schema migrations when first connecting"
    )

    def validate(self) -> None:
        """Reject values the worker cannot run with, naming the key."""
        if self.max_batch_spans < 1:
            raise ConfigError("max_batch_spans must be at least 1")
        if self.flush_interval_s <= 0:
            raise ConfigError("flush_interval_s must be positive")
        if self.max_idle_s is not None and self.max_idle_s <= 0:
            raise ConfigError("max_idle_s must be positive when set")
        if self.db_retry_deadline_s < 0:
            raise ConfigError("db_retry_deadline_s must not be negative")
        check_database_url(self.database_url)


@settings_class
class DatabaseSettings:
    """Only the database, for ``llmobs migrate``."""

    config_section = "migrate"

    database_url: str = setting(
        DEFAULT_DATABASE_URL, "PostgreSQL connection URL", secret=True
    )

    def validate(self) -> None:
        """Reject a URL asyncpg cannot use, naming the key."""
        check_database_url(self.database_url)


@settings_class
class SummarySettings:
    """``llmobs summary``: which spans to summarize."""

    config_section = "summary"

    database_url: str = setting(
        DEFAULT_DATABASE_URL, "PostgreSQL connection URL", secret=True
    )
    since: str = setting("24h", "time window, e.g. 15m, 1h, 7d, or 'all'")
    tenant: str | None = setting(None, "only this tenant (unset: all tenants)")
    wait_s: float = setting(
        0.0, "first wait up to this long for spans to arrive and stop arriving"
    )
    settle_s: float = setting(5.0, "with wait_s: quiet time that means 'all arrived'")

    def validate(self) -> None:
        """Reject a bad URL or window, naming the key."""
        from sinks.summary import parse_since

        check_database_url(self.database_url)
        parse_since(self.since)


def check_database_url(url: str) -> None:
    """Raise ConfigError unless ``url`` is a postgresql:// URL."""
    scheme = urlsplit(url).scheme
    if scheme not in ("postgres", "postgresql"):
        raise ConfigError(
            f"setting database_url: expected postgresql://..., got scheme {scheme!r}"
        )


def masked_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, safe for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    userinfo = netloc[0].partition(":")[0] + ":***"
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{netloc[2]}"))
