"""Settings of the metrics stage of the stream worker."""

from __future__ import annotations

from llmobs import topics
from llmobs.errors import ConfigError
from llmobs.settings import setting, settings_class


@settings_class
class MetricsSettings:
    config_section = "metrics"

    metrics_enabled: bool = setting(True, "run the windowed metrics stage")
    metrics_topic: str = setting(topics.METRICS_1M, "topic of closed metric windows")
    window_s: int = setting(60, "length of a tumbling window")
    grace_s: float = setting(
        10.0, "wait after a window ends before closing it; later spans correct it"
    )
    close_tick_s: float = setting(1.0, "how often due windows are closed")
    dedup_horizon_s: float = setting(
        3600.0,
        "keep the identities of the spans a closed window counted this long, "
        "so that a later copy of one is skipped, not counted as a correction",
    )
    metrics_batch_records: int = setting(
        1000, "llm.spans records counted between two state snapshots, at most"
    )
    metrics_batch_wait_s: float = setting(
        0.5, "longest wait for a batch of llm.spans records"
    )

    def validate(self) -> None:
        if self.window_s < 1:
            raise ConfigError("setting window_s must be at least 1")
        if 86_400 % self.window_s:
            raise ConfigError("setting window_s must divide a day evenly")
        if self.grace_s < 0:
            raise ConfigError("setting grace_s must not be negative")
        if self.dedup_horizon_s < 0:
            raise ConfigError("setting dedup_horizon_s must not be negative")
        for name in ("close_tick_s", "metrics_batch_wait_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"setting {name} must be positive")
        if self.metrics_batch_records < 1:
            raise ConfigError("setting metrics_batch_records must be at least 1")
