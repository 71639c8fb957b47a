"""The index of traces waiting for a decision, in arrival order.

The span batches themselves live in the Faust table (its local store and
its changelog); this index holds their keys plus what deciding needs: when
the trace started and went quiet, whether its root ended, its size.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

COMPLETE = "complete"
DECISION_WAIT = "decision_wait"


@dataclass(slots=True)
class PendingTrace:
    trace_id: str
    partition: int
    first_seen_s: float
    last_seen_s: float
    root_ended: bool = False
    spans: int = 0
    size_bytes: int = 0
    keys: list[bytes] = field(default_factory=list)


class TraceBuffer:
    """Pending traces by first arrival, and root-ended ones by last arrival."""

    def __init__(self) -> None:
        self.traces: dict[str, PendingTrace] = {}
        self._ended: dict[str, None] = {}
        self.spans = 0
        self.held_bytes = 0

    def __len__(self) -> int:
        return len(self.traces)

    def __contains__(self, trace_id: str) -> bool:
        return trace_id in self.traces

    def add(
        self,
        trace_id: str,
        partition: int,
        key: bytes,
        size_bytes: int,
        spans: int,
        root_ended: bool,
        now_s: float,
    ) -> PendingTrace | None:
        """Append one batch; None when this batch (key) is already held."""
        trace = self.traces.get(trace_id)
        if trace is None:
            trace = PendingTrace(trace_id, partition, now_s, now_s)
            self.traces[trace_id] = trace
        elif key in trace.keys:
            return None
        trace.keys.append(key)
        trace.spans += spans
        trace.size_bytes += size_bytes
        trace.last_seen_s = max(trace.last_seen_s, now_s)
        self.spans += spans
        self.held_bytes += size_bytes
        if root_ended or trace.root_ended:
            trace.root_ended = True
            self._ended.pop(trace_id, None)
            self._ended[trace_id] = None
        return trace

    def pop(self, trace_id: str) -> PendingTrace:
        trace = self.traces.pop(trace_id)
        self._ended.pop(trace_id, None)
        self.spans -= trace.spans
        self.held_bytes -= trace.size_bytes
        return trace

    def put_back(self, trace: PendingTrace) -> None:
        """Hold a popped trace again, first in line (its decision failed)."""
        self.traces = {trace.trace_id: trace, **self.traces}
        self.spans += trace.spans
        self.held_bytes += trace.size_bytes
        if trace.root_ended:
            self._ended = {trace.trace_id: None, **self._ended}

    def oldest(self) -> PendingTrace | None:
        return next(iter(self.traces.values()), None)

    def due(
        self, now_s: float, decision_wait_s: float, quiet_period_s: float
    ) -> list[tuple[PendingTrace, str]]:
        """Traces complete and quiet, then traces past the decision wait."""
        out: list[tuple[PendingTrace, str]] = []
        for trace_id in self._ended:
            trace = self.traces[trace_id]
            if now_s - trace.last_seen_s < quiet_period_s:
                break
            out.append((trace, COMPLETE))
        chosen = {t.trace_id for t, _ in out}
        for trace in self.traces.values():
            if now_s - trace.first_seen_s < decision_wait_s:
                break
            if trace.trace_id not in chosen:
                out.append((trace, DECISION_WAIT))
        return out

    def over_caps(
        self,
        grown: Iterable[PendingTrace],
        max_spans_per_trace: int,
        max_bytes_per_trace: int,
        max_traces: int,
        max_buffer_bytes: int,
    ) -> list[tuple[PendingTrace, str]]:
        """Traces to decide early, with the cap: too large ones, then the
        oldest ones beyond ``max_traces`` or ``max_buffer_bytes`` in all."""
        forced: list[tuple[PendingTrace, str]] = []
        for trace in grown:
            if trace.spans >= max_spans_per_trace:
                forced.append((trace, "max_spans_per_trace"))
            elif trace.size_bytes >= max_bytes_per_trace:
                forced.append((trace, "max_bytes_per_trace"))
        chosen = {trace.trace_id for trace, _ in forced}
        traces_left = len(self.traces) - len(chosen)
        bytes_left = self.held_bytes - sum(t.size_bytes for t, _ in forced)
        for trace in self.traces.values():
            if traces_left <= max_traces and bytes_left <= max_buffer_bytes:
                break
            if trace.trace_id in chosen:
                continue
            cap = "max_traces" if traces_left > max_traces else "max_buffer_bytes"
            forced.append((trace, cap))
            traces_left -= 1
            bytes_left -= trace.size_bytes
        return forced

    def forget(self, keep_partitions: set[int]) -> Iterator[PendingTrace]:
        """Drop (and yield) the traces of partitions this worker no longer owns."""
        gone = [t for t in self.traces.values() if t.partition not in keep_partitions]
        for trace in gone:
            yield self.pop(trace.trace_id)
