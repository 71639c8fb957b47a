"""Counters of the tail sampler, rendered in the Prometheus text format."""

from __future__ import annotations

from collections import Counter

from llmobs.prometheus import Exposition

LATENCY_BUCKETS_S = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class SamplerMetrics:
    """What the sampler decided and what it holds, for the /metrics page."""

    def __init__(self) -> None:
        self.decisions: Counter[tuple[str, str]] = Counter()
        self.decided_spans: Counter[str] = Counter()
        self.triggers: Counter[str] = Counter()
        self.forced: Counter[str] = Counter()
        self.late_spans: Counter[str] = Counter()
        self.undecodable_batches = 0
        self.duplicate_batches = 0
        self.repeated_spans = 0
        self.unowned_batches = 0
        self.failed_decisions = 0
        self.split_records = 0
        self.dead_lettered_records = 0
        self.undeliverable_records = 0
        self.missing_batches = 0
        self.decision_cache_evictions = 0
        self.decisions_expired = 0
        self.restored_traces = 0
        self.traces_held = 0
        self.spans_held = 0
        self.bytes_held = 0
        self.decisions_cached = 0
        self._latency_buckets = [0] * len(LATENCY_BUCKETS_S)
        self._latency_sum_s = 0.0
        self._latency_count = 0

    def decided(
        self, policy: str, kept: bool, spans: int, trigger: str, latency_s: float
    ) -> None:
        outcome = "kept" if kept else "dropped"
        self.decisions[(policy, outcome)] += 1
        self.decided_spans[outcome] += spans
        self.triggers[trigger] += 1
        self._latency_sum_s += latency_s
        self._latency_count += 1
        for index, bound in enumerate(LATENCY_BUCKETS_S):
            if latency_s <= bound:
                self._latency_buckets[index] += 1

    def prometheus(self) -> str:
        out = Exposition()
        for name, help_text, values, labels in (
            ("decisions", "traces decided", self.decisions, ("policy", "decision")),
            (
                "decided_spans",
                "spans of decided traces",
                self.decided_spans,
                ("decision",),
            ),
            (
                "decision_triggers",
                "why traces were decided",
                self.triggers,
                ("trigger",),
            ),
            (
                "forced_decisions",
                "early decisions forced by a cap",
                self.forced,
                ("cap",),
            ),
            (
                "late_spans",
                "spans after their trace's decision",
                self.late_spans,
                ("decision",),
            ),
        ):
            out.family(
                f"llmobs_sampling_{name}_total",
                "counter",
                help_text,
                [
                    (dict(zip(labels, _parts(key), strict=True)), count)
                    for key, count in sorted(values.items())
                ],
            )
        for name, value, help_text in (
            ("undecodable_batches", self.undecodable_batches, "input records skipped"),
            ("duplicate_batches", self.duplicate_batches, "input records seen twice"),
            (
                "repeated_spans",
                self.repeated_spans,
                "spans a trace held twice (a re-sent export), kept once",
            ),
            (
                "unowned_batches",
                self.unowned_batches,
                "input records of partitions not owned, left unprocessed",
            ),
            (
                "failed_decisions",
                self.failed_decisions,
                "decisions that failed and wait for a later tick",
            ),
            (
                "split_records",
                self.split_records,
                "kept records split because Kafka would not take them whole",
            ),
            (
                "dead_lettered_records",
                self.dead_lettered_records,
                "kept single-span records too large for Kafka, sent to the DLQ",
            ),
            (
                "undeliverable_records",
                self.undeliverable_records,
                "kept records no topic would take, dropped",
            ),
            (
                "missing_batches",
                self.missing_batches,
                "buffered batches not found in the local store at decision",
            ),
            (
                "decision_cache_evictions",
                self.decision_cache_evictions,
                "decisions evicted from memory (with rocksdb, still on disk)",
            ),
            (
                "decisions_expired",
                self.decisions_expired,
                "decisions forgotten after decision_ttl_s",
            ),
            (
                "restored_traces",
                self.restored_traces,
                "traces recovered from the changelog",
            ),
        ):
            out.single(f"llmobs_sampling_{name}_total", "counter", help_text, value)
        for name, value, help_text in (
            ("traces_held", self.traces_held, "traces waiting for a decision"),
            ("spans_held", self.spans_held, "spans waiting for a decision"),
            ("bytes_held", self.bytes_held, "bytes of spans waiting for a decision"),
            ("decisions_cached", self.decisions_cached, "decisions remembered"),
        ):
            out.single(f"llmobs_sampling_{name}", "gauge", help_text, value)
        out.histogram(
            "llmobs_sampling_decision_latency_seconds",
            "first span to decision",
            zip(LATENCY_BUCKETS_S, self._latency_buckets, strict=True),
            self._latency_sum_s,
            self._latency_count,
        )
        return out.text()


def _parts(key: object) -> tuple[str, ...]:
    """A counter's key as label values: a tuple of them, or just one."""
    return tuple(key) if isinstance(key, tuple) else (str(key),)
