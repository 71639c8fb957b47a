"""Tumbling windows of model-request metrics for one partition of llm.spans.

Only spans with normalized GenAI fields and a model-call operation count as
requests (``MODEL_OPERATIONS``); agent, tool, workflow and retrieval spans do
not. A span belongs to the window of its end time: a request is counted in
the minute it completed and incurred its cost.

A window closes once its end plus the grace period is behind the wall
clock. Spans that arrive for a closed window are gathered as a correction and
emitted at the next close; the sink adds corrections to what it already holds.

Exactness rests on the saved state (``streams.metrics.state``): after a
restart, replayed input at or below the last applied offset is skipped, and
a slot counts a replayed record only past the last offset it already holds;
emitted records are re-sent unchanged, with the same identity (source,
window, key, first offset).
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson

from streams.metrics.sketch import Sketch

log = logging.getLogger(__name__)

MODEL_OPERATIONS = frozenset(
    {"chat", "text_completion", "generate_content", "embeddings"}
)
WINDOW = "window"
CORRECTION = "correction"
NS_PER_MS = 1_000_000
# How a record's identity is derived (MetricWindow.identity_scheme): 1 joins
# the parts with "|", which keys holding "|" can forge, and is kept only for
# records emitted before scheme 2, so that sinks still recognise them.
IDENTITY_JOINED = 1
IDENTITY_SHA256 = 2
# Unpriced requests, and records written before the key had a currency.
DEFAULT_CURRENCY = "USD"


@dataclass(frozen=True, order=True)
class MetricKey:
    """What a window is grouped by."""

    tenant: str
    service: str
    provider: str
    model: str
    operation: str
    # Of the cost: amounts in different currencies never add up.
    currency: str = DEFAULT_CURRENCY


class Bucket:
    """Running aggregates of one window and key."""

    def __init__(self, first_offset: int) -> None:
        self.first_offset = first_offset
        self.last_offset = first_offset
        self.requests = 0
        self.errors = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.cache_read_tokens = 0
        self.reasoning_tokens = 0
        self.cost = Decimal(0)
        self.priced_requests = 0
        self.latency_sum_s = 0.0
        self.ttft_count = 0
        self.ttft_sum_s = 0.0
        self.timed_output_tokens = 0
        self.timed_output_s = 0.0
        self.latency = Sketch()
        self.ttft = Sketch()
        self.max_received_ns = 0

    def add(self, span: dict[str, Any], offset: int, received_ns: int) -> None:
        genai = span["genai"]
        self.last_offset = offset
        self.max_received_ns = max(self.max_received_ns, received_ns)
        self.requests += 1
        if span.get("status_code") == "ERROR" or genai.get("error_type"):
            self.errors += 1
        self.input_tokens += genai.get("input_tokens") or 0
        output_tokens = genai.get("output_tokens") or 0
        self.output_tokens += output_tokens
        self.cache_read_tokens += genai.get("cache_read_tokens") or 0
        self.reasoning_tokens += genai.get("reasoning_tokens") or 0
        cost = span.get("cost")
        # A priced request may cost zero (Decimal("0E-12") is falsy).
        if (
            cost
            and cost.get("status") == "priced"
            and cost.get("total_cost") is not None
        ):
            self.cost += cost["total_cost"]
            self.priced_requests += 1

        latency_s = (span["end_unix_nano"] - span["start_unix_nano"]) / 1e9
        self.latency.add(latency_s)
        self.latency_sum_s += max(latency_s, 0.0)
        if latency_s > 0 and output_tokens:
            self.timed_output_tokens += output_tokens
            self.timed_output_s += latency_s
        ttft_s = genai.get("time_to_first_token_s")
        if ttft_s is not None:
            self.ttft.add(ttft_s)
            self.ttft_count += 1
            self.ttft_sum_s += max(ttft_s, 0.0)

    def to_record(
        self,
        key: MetricKey,
        window_start_ms: int,
        window_s: int,
        source: str,
        kind: str,
    ) -> dict[str, Any]:
        """The MetricWindow record (schema metric_window)."""
        return {
            **key.__dict__,
            "window_start_ms": window_start_ms,
            "window_s": window_s,
            "kind": kind,
            "source": source,
            "first_offset": self.first_offset,
            "last_offset": self.last_offset,
            "requests": self.requests,
            "errors": self.errors,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "cost": self.cost,
            "priced_requests": self.priced_requests,
            "latency_sum_s": self.latency_sum_s,
            "ttft_count": self.ttft_count,
            "ttft_sum_s": self.ttft_sum_s,
            "timed_output_tokens": self.timed_output_tokens,
            "timed_output_s": self.timed_output_s,
            "latency_sketch": self.latency.to_record(),
            "ttft_sketch": self.ttft.to_record(),
            "max_received_unix_nano": self.max_received_ns,
            "emitted_unix_ms": 0,
            "identity_scheme": IDENTITY_SHA256,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Bucket:
        bucket = cls(record["first_offset"])
        for name in (
            "last_offset",
            "requests",
            "errors",
            "input_tokens",
            "output_tokens",
            "cache_read_tokens",
            "reasoning_tokens",
            "priced_requests",
            "latency_sum_s",
            "ttft_count",
            "ttft_sum_s",
            "timed_output_tokens",
            "timed_output_s",
        ):
            setattr(bucket, name, record[name])
        bucket.cost = Decimal(record["cost"])
        bucket.latency = Sketch.from_record(record["latency_sketch"])
        bucket.ttft = Sketch.from_record(record["ttft_sketch"])
        bucket.max_received_ns = record["max_received_unix_nano"]
        return bucket


def request_key(batch: dict[str, Any], span: dict[str, Any]) -> MetricKey | None:
    """The span's key, or None when the span is not a model request."""
    genai = span.get("genai")
    if not genai or genai.get("operation") not in MODEL_OPERATIONS:
        return None
    resources = batch.get("resources") or []
    index = span.get("resource_index", 0)
    service = resources[index]["service_name"] if 0 <= index < len(resources) else ""
    cost = span.get("cost") or {}
    currency = cost.get("currency") if cost.get("status") == "priced" else None
    return MetricKey(
        tenant=batch.get("tenant") or "default",
        service=service or "",
        provider=genai.get("provider") or "",
        model=genai.get("request_model") or genai.get("response_model") or "",
        operation=genai["operation"],
        currency=currency or DEFAULT_CURRENCY,
    )


Slot = tuple[int, MetricKey]


class PartitionWindows:
    """Open windows, corrections and outbox of one input partition.

    Besides the counts it tracks what a save must write (``dirty`` slots,
    ``unsaved`` outbox records) and, after a restore, up to which input
    offset each slot is already counted, so that replayed input adds only
    what the saved state lacks.
    """

    def __init__(self, source: str, window_s: int, grace_s: float) -> None:
        self.source = source
        self.window_s = window_s
        self.window_ms = window_s * 1000
        self.grace_ms = int(grace_s * 1000)
        self.applied_offset = -1
        self.closed_before_ms = 0
        self.open: dict[Slot, Bucket] = {}
        self.corrections: dict[Slot, Bucket] = {}
        self.outbox: list[dict[str, Any]] = []
        # Slots whose saved bucket differs from the one held here.
        self.dirty: set[Slot] = set()
        # Outbox records not saved yet.
        self.unsaved: list[dict[str, Any]] = []
        # Slot -> last input offset counted in an outbox record of the slot.
        self.counted_upto: dict[Slot, int] = {}

    def apply(self, offset: int, batch: dict[str, Any]) -> int:
        """Count a SpanBatch read at ``offset``; returns the requests counted."""
        if offset <= self.applied_offset:
            return 0
        self.applied_offset = offset
        received_ns = batch.get("received_unix_nano") or 0
        counted = 0
        # One decision per slot and record: a restored bucket may already
        # hold this record, and then holds all of its spans.
        targets: dict[Slot, Bucket | None] = {}
        for span in batch.get("spans") or ():
            key = request_key(batch, span)
            if key is None:
                continue
            end_ms = span["end_unix_nano"] // NS_PER_MS
            slot = (end_ms - end_ms % self.window_ms, key)
            if slot not in targets:
                targets[slot] = self._bucket_for(slot, offset)
            bucket = targets[slot]
            if bucket is None:
                continue
            bucket.add(span, offset, received_ns)
            counted += 1
        return counted

    def _bucket_for(self, slot: Slot, offset: int) -> Bucket | None:
        """The bucket that counts ``offset`` in ``slot``; None if counted."""
        bucket = self.open.get(slot) or self.corrections.get(slot)
        if bucket is not None:
            if offset <= bucket.last_offset:
                return None
        elif offset <= self.counted_upto.get(slot, -1):
            return None
        else:
            slots = self.open if slot[0] >= self.closed_before_ms else self.corrections
            bucket = slots[slot] = Bucket(offset)
        self.dirty.add(slot)
        return bucket

    def close(self, now_ms: int | None = None) -> int:
        """Move closed windows and all corrections to the outbox; how many."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        # Wall clock, not stream time: spans reach us some time after they
        # end, and a partition that goes quiet must still close its windows.
        horizon_ms = now_ms - self.grace_ms
        closed_before = horizon_ms - horizon_ms % self.window_ms
        if closed_before > self.closed_before_ms:
            self.closed_before_ms = closed_before
        moved = 0
        for slot in sorted(s for s in self.open if s[0] < self.closed_before_ms):
            self._emit(slot, self.open.pop(slot), WINDOW)
            moved += 1
        for slot in sorted(self.corrections):
            self._emit(slot, self.corrections.pop(slot), CORRECTION)
            moved += 1
        return moved

    def _emit(self, slot: Slot, bucket: Bucket, kind: str) -> None:
        start_ms, key = slot
        record = bucket.to_record(key, start_ms, self.window_s, self.source, kind)
        record["emitted_unix_ms"] = int(time.time() * 1000)
        self.outbox.append(record)
        self.unsaved.append(record)
        self.dirty.add(slot)
        # A restored bucket may hold input past the applied offset, which
        # is replayed after it closes.
        upto = max(self.counted_upto.get(slot, -1), bucket.last_offset)
        self.counted_upto[slot] = upto

    def bucket(self, slot: Slot) -> tuple[Bucket, str] | None:
        """The bucket held for ``slot`` and its kind, if any."""
        if slot in self.open:
            return self.open[slot], WINDOW
        if slot in self.corrections:
            return self.corrections[slot], CORRECTION
        return None

    def bucket_record(self, slot: Slot) -> dict[str, Any] | None:
        """The held bucket of ``slot`` as a record, to be saved; None if none."""
        held = self.bucket(slot)
        if held is None:
            return None
        bucket, kind = held
        return bucket.to_record(slot[1], slot[0], self.window_s, self.source, kind)

    def hold(self, record: dict[str, Any]) -> Slot:
        """Hold a saved bucket record again (restore); returns its slot."""
        slot = slot_of(record)
        self.open.pop(slot, None)
        self.corrections.pop(slot, None)
        slots = self.corrections if record["kind"] == CORRECTION else self.open
        slots[slot] = Bucket.from_record(record)
        return slot

    def settle(self, record: dict[str, Any]) -> None:
        """Restore an outbox record: whatever its slot holds up to the
        record's last offset is counted, and a bucket it was closed from is
        gone."""
        slot = slot_of(record)
        held = self.bucket(slot)
        if held is not None and held[0].first_offset == record["first_offset"]:
            self.open.pop(slot, None)
            self.corrections.pop(slot, None)
            self.dirty.add(slot)
        last = max(self.counted_upto.get(slot, -1), record["last_offset"])
        self.counted_upto[slot] = last
        self.outbox.append(record)

    def forget_counted(self, applied_offset: int) -> None:
        """Drop offsets a replay can no longer reach (saved ``applied_offset``)."""
        self.counted_upto = {
            s: o for s, o in self.counted_upto.items() if o > applied_offset
        }


def slot_of(record: dict[str, Any]) -> Slot:
    """The (window start, key) of a MetricWindow record."""
    return (record["window_start_ms"], MetricKey(*(record[f] for f in _KEY_FIELDS)))


def record_with_decimal(record: dict[str, Any]) -> dict[str, Any]:
    """A record read back from JSON, its cost a Decimal again."""
    record["cost"] = Decimal(record["cost"])
    # Records saved before identity schemes existed were emitted as scheme 1.
    record.setdefault("identity_scheme", IDENTITY_JOINED)
    record.setdefault("currency", DEFAULT_CURRENCY)
    return record


_KEY_FIELDS = tuple(MetricKey.__dataclass_fields__)
# A scheme 1 identity has the key as it was before it had a currency.
_JOINED_KEY_FIELDS = _KEY_FIELDS[:5]


def identity(record: dict[str, Any]) -> str:
    """The deterministic identity of a MetricWindow record; sinks add each once."""
    joined = record["identity_scheme"] == IDENTITY_JOINED
    parts = [
        record["source"],
        record["window_start_ms"],
        *(record[f] for f in (_JOINED_KEY_FIELDS if joined else _KEY_FIELDS)),
        record["first_offset"],
    ]
    if joined:
        return "|".join(str(part) for part in parts)
    # A JSON array cannot be forged by the strings inside it.
    return hashlib.sha256(orjson.dumps(parts)).hexdigest()
