"""Tumbling windows of model-request metrics for one partition of llm.spans.

Only spans with normalized GenAI fields and a model-call operation count as
requests (``MODEL_OPERATIONS``); agent, tool, workflow and retrieval spans do
not. A span belongs to the window of its end time: a request is counted in
the minute it completed and incurred its cost.

A window closes once its end plus the grace period is behind the wall
clock. Spans that arrive for a closed window are gathered as a correction and
emitted at the next close; the sink adds corrections to what it already holds.

Each span counts once, whatever copies of it llm.spans holds: a window keeps
the identities of the spans it counted (``streams.metrics.dedup``), and a
copy of one is skipped, until ``dedup_horizon_s`` after its window's record
was saved, by the wall clock and by the receipt time of the input read. A
bucket past ``BUCKET_SPANS_MAX`` identities is emitted early (once a save)
and its slot goes on in a new bucket; once that one is full too, the
worker saves before it counts on (``needs_save``), so that a saved value
stays far below the broker's message size limit.

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
from array import array
from decimal import Decimal
from typing import Any

import orjson

from streams.metrics.bucket import (
    DEFAULT_CURRENCY,
    IDENTITY_JOINED,
    Bucket,
    MetricKey,
    request_key,
)
from streams.metrics.dedup import SeenSpans, WindowSpans, span_hash, trace_hasher

log = logging.getLogger(__name__)

WINDOW = "window"
CORRECTION = "correction"
NS_PER_MS = 1_000_000
DEFAULT_DEDUP_HORIZON_S = 3600.0
# A bucket splits once a save: its saved value holds about 90 kB of
# identities, plus those counted in one batch of input.
BUCKET_SPANS_MAX = 8_192

Slot = tuple[int, MetricKey]


class PartitionWindows:
    """Open windows, corrections and outbox of one input partition.

    Besides the counts it tracks what a save must write (``dirty`` slots,
    ``unsaved`` outbox records, ``split`` slots) and, after a restore, up to
    which input offset each slot is already counted, so that replayed input
    adds only what the saved state lacks.
    """

    def __init__(
        self,
        source: str,
        window_s: int,
        grace_s: float,
        dedup_horizon_s: float = DEFAULT_DEDUP_HORIZON_S,
    ) -> None:
        self.source = source
        self.window_s = window_s
        self.window_ms = window_s * 1000
        self.grace_ms = int(grace_s * 1000)
        self.bucket_spans_max = BUCKET_SPANS_MAX
        self.applied_offset = -1
        self.closed_before_ms = 0
        # The wall clock of the last close.
        self.now_ms = 0
        # The latest receipt time of the input applied since the restore:
        # identities expire by it too, so a worker that was down longer than
        # the horizon still knows the spans of the backlog it reads.
        self.received_ms = 0
        self.open: dict[Slot, Bucket] = {}
        self.corrections: dict[Slot, Bucket] = {}
        self.outbox: list[dict[str, Any]] = []
        self.seen = SeenSpans(int(dedup_horizon_s * 1000))
        self.duplicate_spans = 0
        # Slots whose saved bucket differs from the one held here.
        self.dirty: set[Slot] = set()
        # Slots whose bucket was emitted early since the save, into a record
        # that must be saved before the slot's next bucket.
        self.split: set[Slot] = set()
        # Outbox records not saved yet, with the identities of their spans.
        self.unsaved: list[tuple[dict[str, Any], array]] = []
        # Slot -> last input offset counted in an outbox record of the slot.
        self.counted_upto: dict[Slot, int] = {}

    def apply(self, offset: int, batch: dict[str, Any]) -> int:
        """Count a SpanBatch read at ``offset``; returns the requests counted."""
        if offset <= self.applied_offset:
            return 0
        self.applied_offset = offset
        received_ns = batch.get("received_unix_nano") or 0
        self.received_ms = max(self.received_ms, received_ns // NS_PER_MS)
        counted = 0
        trace_id = batch.get("trace_id")
        trace = None
        # The identities of the window of the last span: most spans of a
        # record end in the same one.
        spans_start_ms, spans = -1, WindowSpans()
        # One decision per slot and record: a restored bucket may already
        # hold this record, and then holds all of its spans.
        targets: dict[Slot, Bucket] = {}
        held: set[Slot] = set()
        for span in batch.get("spans") or ():
            key = request_key(batch, span)
            if key is None:
                continue
            end_ms = span["end_unix_nano"] // NS_PER_MS
            start_ms = end_ms - end_ms % self.window_ms
            slot = (start_ms, key)
            bucket = targets.get(slot)
            if bucket is None and (slot in held or self._holds(slot, offset)):
                held.add(slot)
                continue

            # A span without ids cannot be told from another: it counts.
            identity_hash = None
            span_id = span.get("span_id")
            if span_id and trace_id:
                if trace is None:
                    trace = trace_hasher(key.tenant, trace_id)
                identity_hash = span_hash(trace, span_id)
                if start_ms != spans_start_ms:
                    spans_start_ms, spans = start_ms, self.seen.window(start_ms)
                if identity_hash in spans.live or (
                    spans.chunks and spans.sealed(identity_hash)
                ):
                    self.duplicate_spans += 1
                    continue
                spans.live.add(identity_hash)

            # Made only now: a copy alone must not open a correction.
            if bucket is None:
                bucket = targets[slot] = self._bucket_for(slot, offset)
            bucket.add(span, identity_hash, offset, received_ns)
            counted += 1
        return counted

    def _holds(self, slot: Slot, offset: int) -> bool:
        """Whether ``slot`` has counted the record at ``offset`` already."""
        bucket = self.open.get(slot) or self.corrections.get(slot)
        if bucket is not None:
            return offset <= bucket.last_offset
        return offset <= self.counted_upto.get(slot, -1)

    def _bucket_for(self, slot: Slot, offset: int) -> Bucket:
        """The bucket that counts ``offset`` in ``slot``, which has not."""
        self.dirty.add(slot)
        slots = self.open if slot in self.open else self.corrections
        bucket = slots.get(slot)
        # Once a save at most, as a slot closes (see ``close``).
        if (
            bucket is not None
            and len(bucket.spans) >= self.bucket_spans_max
            and slot not in self.split
        ):
            kind = WINDOW if slots is self.open else CORRECTION
            self._emit(slot, slots.pop(slot), kind)
            self.split.add(slot)
            bucket = slots[slot] = Bucket(offset)
        if bucket is None:
            slots = self.open if slot[0] >= self.closed_before_ms else self.corrections
            bucket = slots[slot] = Bucket(offset)
        return bucket

    def close(self, now_ms: int | None = None) -> int:
        """Move closed windows and all corrections to the outbox; how many."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        self.now_ms = now_ms
        # Wall clock, not stream time: spans reach us some time after they
        # end, and a partition that goes quiet must still close its windows.
        horizon_ms = now_ms - self.grace_ms
        closed_before = horizon_ms - horizon_ms % self.window_ms
        if closed_before > self.closed_before_ms:
            self.closed_before_ms = closed_before
        # A slot split since the save closes at the next close: one record a
        # slot per save, so that a bucket beside a saved record is either
        # that record's earlier self or newer than it.
        moved = 0
        for slot in sorted(s for s in self.open if s[0] < self.closed_before_ms):
            if slot not in self.split:
                self._emit(slot, self.open.pop(slot), WINDOW)
                moved += 1
        for slot in sorted(s for s in self.corrections if s not in self.split):
            self._emit(slot, self.corrections.pop(slot), CORRECTION)
            moved += 1
        return moved

    def _emit(self, slot: Slot, bucket: Bucket, kind: str) -> None:
        start_ms, key = slot
        record = bucket.to_record(key, start_ms, self.window_s, self.source, kind)
        record["emitted_unix_ms"] = int(time.time() * 1000)
        self.outbox.append(record)
        self.unsaved.append((record, bucket.spans))
        self.seen.emitted(start_ms, bucket.spans)
        self.dirty.add(slot)
        # A restored bucket may hold input past the applied offset, which
        # is replayed after it closes.
        upto = max(self.counted_upto.get(slot, -1), bucket.last_offset)
        self.counted_upto[slot] = upto

    def needs_save(self) -> bool:
        """Whether a slot split since the save is full again: the state must
        be saved before more is counted, or the slot's value keeps growing."""
        for slot in self.split:
            held = self.bucket(slot)
            if held is not None and len(held[0].spans) >= self.bucket_spans_max:
                return True
        return False

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

    def hold(self, record: dict[str, Any], spans: array | None = None) -> Slot:
        """Hold a saved bucket record, whose spans are ``spans``, again
        (restore); returns its slot."""
        slot = slot_of(record)
        self.open.pop(slot, None)
        self.corrections.pop(slot, None)
        slots = self.corrections if record["kind"] == CORRECTION else self.open
        bucket = slots[slot] = Bucket.from_record(record, spans)
        self.seen.held(slot[0], bucket.spans)
        return slot

    def settle(self, record: dict[str, Any], spans: array) -> None:
        """Restore an outbox record of ``spans``: whatever its slot holds up
        to the record's last offset is counted, and a bucket it was closed
        from is gone."""
        slot = slot_of(record)
        # Its spans may not be sealed yet.
        self.seen.held(slot[0], spans)
        self.seen.emitted(slot[0], spans, restored=True)
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


_KEY_FIELDS = MetricKey._fields
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
