"""Settings of the tail sampler, a stage of the stream worker."""

from __future__ import annotations

from pathlib import Path

from llmobs import topics
from llmobs.errors import ConfigError
from llmobs.settings import setting, settings_class

# Keep errors, failed and slow model calls, expensive traces and unpriced
# models; a tenth of the rest, under a rate limit.
DEFAULT_POLICIES = Path(__file__).with_name("default-policies.yaml")
# Local stores of the sampler's tables (see store.py).
ROCKSDB = "rocksdb"
MEMORY = "memory"
STORES = (ROCKSDB, MEMORY)


@settings_class
class SamplingSettings:
    config_section = "sampling"

    sampling_enabled: bool = setting(True, "run the tail-sampling stage")
    policies_file: str = setting(
        str(DEFAULT_POLICIES), "YAML file of sampling policies"
    )
    sampled_topic: str = setting(topics.SPANS_SAMPLED, "topic of the kept traces")
    sampling_store: str = setting(
        ROCKSDB,
        "local store of the buffered spans: rocksdb (on disk under data_dir) or"
        " memory; both are rebuilt from their changelog topic when lost",
    )
    decision_wait_s: float = setting(
        30.0, "longest wait after a trace's first span before deciding"
    )
    quiet_period_s: float = setting(
        2.0, "decide this long after the last span once the root span has ended"
    )
    decision_tick_s: float = setting(0.5, "how often due traces are decided")
    sampling_batch_records: int = setting(
        500, "llm.spans records buffered per batch, confirmed together"
    )
    sampling_batch_wait_s: float = setting(0.05, "longest wait to fill a batch")
    max_traces: int = setting(50_000, "traces held at once; more forces decisions")
    max_spans_per_trace: int = setting(
        5_000, "spans held for one trace; more forces its decision"
    )
    max_bytes_per_trace: int = setting(
        16 * 1024 * 1024, "bytes held for one trace; more forces its decision"
    )
    max_buffer_bytes: int = setting(
        1024 * 1024 * 1024,
        "bytes held over all traces; more forces the oldest trace's decision",
    )
    decision_cache_size: int = setting(
        1_000_000,
        "decisions remembered in memory for late spans, oldest evicted first; with"
        " the memory store, also those kept in the decisions table",
    )
    decision_ttl_s: float = setting(
        3600.0,
        "how long a decision is remembered for late spans; with the rocksdb"
        " store, beyond decision_cache_size, on disk",
    )

    def validate(self) -> None:
        if self.sampling_store not in STORES:
            raise ConfigError(
                f"setting sampling_store must be one of {', '.join(STORES)},"
                f" not {self.sampling_store!r}"
            )
        for name in (
            "decision_wait_s",
            "quiet_period_s",
            "decision_tick_s",
            "sampling_batch_wait_s",
            "decision_ttl_s",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"setting {name} must be positive")
        for name in (
            "sampling_batch_records",
            "max_traces",
            "max_spans_per_trace",
            "max_bytes_per_trace",
            "max_buffer_bytes",
            "decision_cache_size",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"setting {name} must be at least 1")
        if self.max_buffer_bytes < self.max_bytes_per_trace:
            raise ConfigError(
                "setting max_buffer_bytes must be at least max_bytes_per_trace"
            )
        if self.decision_cache_size < self.max_traces:
            raise ConfigError(
                "setting decision_cache_size must be at least max_traces, or late"
                " spans of just-decided traces would be decided again"
            )
