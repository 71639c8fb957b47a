"""Settings of ``llmobs sink-archive``."""

from __future__ import annotations

from llmobs import topics
from llmobs.errors import ConfigError
from llmobs.kafka import DEFAULT_BOOTSTRAP
from llmobs.settings import setting, settings_class
from sinks.settings import SinkEndpoint

MIB = 1024 * 1024


@settings_class
class ArchiveSettings(SinkEndpoint):
    """The archive sink: llm.spans into Parquet files, local or on S3."""

    config_section = "archive"

    kafka_bootstrap: str = setting(DEFAULT_BOOTSTRAP, "Kafka bootstrap servers")
    spans_topic: str = setting(topics.SPANS, "topic of normalized span batches")
    group_id: str = setting("llmobs-sink-archive", "Kafka consumer group")
    dlq_topic: str = setting(topics.DLQ, "dead-letter topic for unreadable records")
    archive_url: str = setting(
        ".local/archive", "a local folder, file:///folder or s3://bucket/prefix"
    )
    s3_endpoint_url: str | None = setting(
        None, "S3 API endpoint override, e.g. MinIO's (unset: AWS)"
    )
    s3_region: str = setting("us-east-1", "S3 region")
    s3_access_key_id: str | None = setting(
        None, "S3 access key (unset: boto3's usual credential chain)", secret=True
    )
    s3_secret_access_key: str | None = setting(
        None, "S3 secret key (unset: boto3's usual credential chain)", secret=True
    )
    multipart_chunk_bytes: int = setting(8 * MIB, "S3 multipart part size")
    max_file_bytes: int = setting(
        64 * MIB, "roll a file once its buffered spans reach this size"
    )
    max_file_age_s: float = setting(300.0, "roll a file this long after it opened")
    max_open_files: int = setting(
        256, "files buffered at once; the oldest is rolled beyond this"
    )
    zstd_level: int = setting(3, "zstd compression level of the Parquet files")
    max_batch_spans: int = setting(5000, "spans taken from Kafka per step")
    flush_interval_s: float = setting(1.0, "longest wait before buffering a batch")
    upload_retry_deadline_s: float = setting(
        120.0,
        "how long an upload is retried on transient storage errors (never past "
        "two thirds of max_poll_interval_s in one round)",
    )
    max_poll_interval_s: float = setting(
        300.0,
        "the group gives our partitions to another member after this long "
        "without a poll; a round of uploads stays within two thirds of it",
    )
    max_idle_s: float | None = setting(
        None, "stop after this long without new records (unset: run forever)"
    )

    def validate(self) -> None:
        """Reject values the sink cannot run with, naming the key."""
        if not self.archive_url:
            raise ConfigError("archive_url must not be empty")
        if self.archive_url.startswith("s3://") and len(self.archive_url) <= 5:
            raise ConfigError("archive_url s3:// needs a bucket name")
        if self.multipart_chunk_bytes < 5 * MIB:
            raise ConfigError("multipart_chunk_bytes must be at least 5 MiB (S3)")
        if self.max_file_bytes < 1:
            raise ConfigError("max_file_bytes must be at least 1")
        if self.max_file_age_s <= 0:
            raise ConfigError("max_file_age_s must be positive")
        if self.max_open_files < 1:
            raise ConfigError("max_open_files must be at least 1")
        if not 1 <= self.zstd_level <= 22:
            raise ConfigError("zstd_level must be between 1 and 22")
        if self.max_batch_spans < 1:
            raise ConfigError("max_batch_spans must be at least 1")
        if self.flush_interval_s <= 0:
            raise ConfigError("flush_interval_s must be positive")
        if self.upload_retry_deadline_s < 0:
            raise ConfigError("upload_retry_deadline_s must not be negative")
        if self.max_poll_interval_s < 30:
            raise ConfigError("max_poll_interval_s must be at least 30")
        if self.max_idle_s is not None and self.max_idle_s <= 0:
            raise ConfigError("max_idle_s must be positive when set")
