"""Counters of the tail sampler, rendered in the Prometheus text format."""

from __future__ import annotations

from collections import Counter

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
        out: list[str] = []
        _counter(
            out, "decisions", "traces decided", self.decisions, ("policy", "decision")
        )
        _counter(
            out,
            "decided_spans",
            "spans of decided traces",
            self.decided_spans,
            ("decision",),
        )
        _counter(
            out,
            "decision_triggers",
            "why traces were decided",
            self.triggers,
            ("trigger",),
        )
        _counter(
            out,
            "forced_decisions",
            "early decisions forced by a cap",
            self.forced,
            ("cap",),
        )
        _counter(
            out,
            "late_spans",
            "spans after their trace's decision",
            self.late_spans,
            ("decision",),
        )
        for name, value, doc in (
            (
                "undecodable_batches_total",
                self.undecodable_batches,
                "input records skipped",
            ),
            (
                "duplicate_batches_total",
                self.duplicate_batches,
                "input records seen twice",
            ),
            (
                "repeated_spans_total",
                self.repeated_spans,
                "spans a trace held twice (a re-sent export), kept once",
            ),
            (
                "unowned_batches_total",
                self.unowned_batches,
                "input records of partitions not owned, left unprocessed",
            ),
            (
                "failed_decisions_total",
                self.failed_decisions,
                "decisions that failed and wait for a later tick",
            ),
            (
                "split_records_total",
                self.split_records,
                "kept records split because Kafka would not take them whole",
            ),
            (
                "dead_lettered_records_total",
                self.dead_lettered_records,
                "kept single-span records too large for Kafka, sent to the DLQ",
            ),
            (
                "undeliverable_records_total",
                self.undeliverable_records,
                "kept records no topic would take, dropped",
            ),
            (
                "missing_batches_total",
                self.missing_batches,
                "buffered batches not found in the local store at decision",
            ),
            (
                "decision_cache_evictions_total",
                self.decision_cache_evictions,
                "decisions evicted from memory (with rocksdb, still on disk)",
            ),
            (
                "decisions_expired_total",
                self.decisions_expired,
                "decisions forgotten after decision_ttl_s",
            ),
            (
                "restored_traces_total",
                self.restored_traces,
                "traces recovered from the changelog",
            ),
        ):
            out += [
                f"# HELP llmobs_sampling_{name} {doc}",
                f"# TYPE llmobs_sampling_{name} counter",
                f"llmobs_sampling_{name} {value}",
            ]
        for name, value, doc in (
            ("traces_held", self.traces_held, "traces waiting for a decision"),
            ("spans_held", self.spans_held, "spans waiting for a decision"),
            ("bytes_held", self.bytes_held, "bytes of spans waiting for a decision"),
            ("decisions_cached", self.decisions_cached, "decisions remembered"),
        ):
            out += [
                f"# HELP llmobs_sampling_{name} {doc}",
                f"# TYPE llmobs_sampling_{name} gauge",
                f"llmobs_sampling_{name} {value}",
            ]
        name = "llmobs_sampling_decision_latency_seconds"
        out += [f"# HELP {name} first span to decision", f"# TYPE {name} histogram"]
        for bound, count in zip(LATENCY_BUCKETS_S, self._latency_buckets, strict=True):
            out.append(f'{name}_bucket{{le="{bound}"}} {count}')
        out.append(f'{name}_bucket{{le="+Inf"}} {self._latency_count}')
        out.append(f"{name}_sum {self._latency_sum_s:.6f}")
        out.append(f"{name}_count {self._latency_count}")
        return "\n".join(out) + "\n"


def _counter(
    out: list[str],
    name: str,
    doc: str,
    values: Counter[tuple[str, str]] | Counter[str],
    labels: tuple[str, ...],
) -> None:
    full = f"llmobs_sampling_{name}_total"
    out += [f"# HELP {full} {doc}", f"# TYPE {full} counter"]
    for key, count in sorted(values.items()):
        parts = key if isinstance(key, tuple) else (key,)
        rendered = ",".join(
            f'{label}="{_escape(part)}"'
            for label, part in zip(labels, parts, strict=True)
        )
        out.append(f"{full}{{{rendered}}} {count}")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
