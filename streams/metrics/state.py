"""How a partition's metric windows are kept in the changelog, key by key.

Table ``metrics-windows`` holds, for input partition ``<p>`` (keys are bytes):

- ``<p>:m``: the meta, the last input offset applied and the window start
  before which windows are closed;
- ``<p>:b:<slot hash>``: one open or correction bucket;
- ``<p>:o:<identity hash>``: one closed record not yet delivered;
- ``<p>:s:<value hash>``: sealed span identities of one window (a ``Chunk``
  of ``streams.metrics.dedup``), copied from records already saved, deleted
  ``dedup_horizon_s`` after;
- ``<p>``: the whole state as one value, the layout of earlier versions;
  read when no meta exists, then deleted.

A bucket's and a record's value carry the identities of the spans they
counted (``span_hashes``). Each value is small (a bucket is bounded by its
sketch and by ``BUCKET_SPANS_MAX`` identities, a chunk by
``CHUNK_HASHES_MAX``), so no state outgrows the broker's message size, and a
save writes only what changed. A save is three phases, each confirmed by
Kafka before the next:

1. new outbox records and changed buckets, but for the bucket of a slot
   split (emitted early) in this save;
2. deletions of the buckets closed into those records, the split slots'
   new buckets, the records' identities sealed into chunks, and the meta;
3. deletions of delivered records, of the old single value, and of chunks
   merged into others or past the horizon.

Any crash leaves some writes of the current phase durable, all of the
earlier ones. The restore stays exact because every durable bucket holds all
of its slot's requests up to its own last offset, every durable record up to
its own, and a bucket still present beside the record closed from it (same
first offset) is that record's earlier self: replayed input is counted in a
slot only past what the slot already holds (see ``PartitionWindows.apply``).
A slot makes one record a save at most, so a bucket beside a saved record is
its earlier self or newer. A split slot's new bucket is written only once
the record before it is, and the meta beside it claims only the input before
that bucket, which a replay counts again if the bucket was lost. A delivered
record is deleted only once a saved meta covers its offsets and a chunk
holds its identities.

Span identities are saved in the values holding their counts and sealed
only from saved records, so a restore knows exactly the spans of durable
counts: a replayed span is skipped as a copy only when a durable value
counted an earlier copy; otherwise that copy, replayed first, counts.
"""

from __future__ import annotations

import hashlib
import logging
from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from streams.metrics.dedup import (
    HASH_TYPECODE,
    Chunk,
    hashes_from_text,
    hashes_to_text,
)
from streams.metrics.window import (
    CORRECTION,
    WINDOW,
    PartitionWindows,
    Slot,
    identity,
    record_with_decimal,
)

log = logging.getLogger(__name__)

META_VERSION = 2
# The field of a saved bucket or record that lists its spans' identities.
SPAN_HASHES = "span_hashes"


@dataclass(frozen=True)
class Write:
    """One changelog record: a value, or None to delete the key."""

    key: bytes
    value: bytes | None


class SavedState:
    """What of one partition's windows the changelog holds, and the next writes."""

    def __init__(self, partition: int, windows: PartitionWindows) -> None:
        self.partition = partition
        self.windows = windows
        self.prefix = f"{partition}:".encode()
        # Slots with a bucket key in the changelog.
        self.stored: set[Slot] = set()
        self.saved_meta: tuple[int, int] | None = None
        # The meta of the save under way: (applied offset, closed before ms).
        self._meta: tuple[int, int] = (-1, 0)
        # Delivered records whose keys wait for a meta covering them.
        self.delivered: list[dict[str, Any]] = []
        self.legacy = False

    @property
    def meta_key(self) -> bytes:
        return self.prefix + b"m"

    @property
    def legacy_key(self) -> bytes:
        return str(self.partition).encode()

    def bucket_key(self, slot: Slot) -> bytes:
        start_ms, key = slot
        parts = [start_ms, *key]
        return self.prefix + b"b:" + _hash(orjson.dumps(parts))

    def record_key(self, record: dict[str, Any]) -> bytes:
        return self.prefix + b"o:" + _hash(identity(record).encode())

    def chunk_key(self, chunk: Chunk) -> bytes:
        return self.prefix + b"s:" + chunk.name

    def changes(self) -> list[Write]:
        """Phase 1: the records closed and the buckets changed since the save."""
        w = self.windows
        writes = [Write(self.record_key(r), _dumps(r, spans)) for r, spans in w.unsaved]
        for slot in sorted(w.dirty - w.split, key=_order):
            write = self._bucket_write(slot)
            if write is not None:
                writes.append(write)
        return writes

    def commit(self) -> list[Write]:
        """Phase 2: closed buckets deleted, split slots' buckets, the records'
        identities sealed, and the meta, if anything changed."""
        w = self.windows
        writes = [
            Write(self.bucket_key(slot), None)
            for slot in sorted(w.dirty, key=_order)
            if slot in self.stored and w.bucket(slot) is None
        ]
        applied_offset = w.applied_offset
        for slot in sorted(w.split, key=_order):
            write = self._bucket_write(slot)
            held = w.bucket(slot)
            if write is None or held is None:
                continue
            writes.append(write)
            # Written beside the meta, the bucket may be lost while the meta
            # is not: the meta must leave its input to a replay.
            applied_offset = min(applied_offset, held[0].first_offset - 1)
        writes += [
            Write(self.chunk_key(c), c.to_bytes()) for c in w.seen.seal(w.now_ms)
        ]
        self._meta = (applied_offset, w.closed_before_ms)
        if writes or w.dirty or w.unsaved or self._meta != self.saved_meta:
            value = {
                "v": META_VERSION,
                "applied_offset": applied_offset,
                "closed_before_ms": w.closed_before_ms,
            }
            writes.append(Write(self.meta_key, orjson.dumps(value)))
        return writes

    def committed(self) -> None:
        """Phases 1 and 2 are confirmed: the changelog holds this state."""
        w = self.windows
        for slot in w.dirty:
            if w.bucket(slot) is None:
                self.stored.discard(slot)
            else:
                self.stored.add(slot)
        w.dirty.clear()
        w.split.clear()
        w.unsaved = []
        w.seen.sealed()
        self.saved_meta = self._meta
        w.forget_counted(self._meta[0])

    def _bucket_write(self, slot: Slot) -> Write | None:
        """The value of ``slot``'s held bucket with its spans; None if none."""
        held = self.windows.bucket(slot)
        record = self.windows.bucket_record(slot)
        if held is None or record is None:
            return None
        return Write(self.bucket_key(slot), _dumps(record, held[0].spans))

    def cleanup(self) -> list[Write]:
        """Phase 3: delivered records a saved meta covers, the old value, and
        chunks merged or past the horizon."""
        w = self.windows
        applied = -1 if self.saved_meta is None else self.saved_meta[0]
        writes = [
            Write(self.record_key(r), None)
            for r in self.delivered
            if r["last_offset"] <= applied
        ]
        if self.legacy and self.saved_meta is not None:
            writes.append(Write(self.legacy_key, None))
        writes += [
            Write(self.chunk_key(c), None)
            for c in w.seen.expire(min(w.now_ms, w.received_ms), w.closed_before_ms)
        ]
        return writes

    def cleaned(self) -> None:
        """Phase 3 is confirmed."""
        applied = -1 if self.saved_meta is None else self.saved_meta[0]
        self.delivered = [r for r in self.delivered if r["last_offset"] > applied]
        if self.saved_meta is not None:
            self.legacy = False
        self.windows.seen.expired()

    def sent(self, records: Iterable[dict[str, Any]]) -> None:
        """The outbox ``records`` are delivered; their keys may go."""
        self.delivered += records
        self.windows.outbox = []

    def restore(self, data: Mapping[bytes, bytes]) -> None:
        """Rebuild the windows from the table's values of this partition."""
        w = self.windows
        meta = data.get(self.meta_key)
        buckets: list[tuple[dict[str, Any], array]] = []
        records: list[tuple[dict[str, Any], array]] = []
        for key, value in data.items():
            if not key.startswith(self.prefix) or value is None:
                continue
            kind = key[len(self.prefix) : len(self.prefix) + 2]
            if kind == b"b:":
                buckets.append(_loads(value))
            elif kind == b"o:":
                records.append(_loads(value))
            elif kind == b"s:":
                w.seen.load(Chunk.from_bytes(value))

        # The old single value is the base the new keys overwrite, until a
        # meta says the new keys hold the whole state.
        old = data.get(self.legacy_key)
        if old is not None:
            self.legacy = True
            if meta is None:
                self._restore_legacy(old)
        if meta is not None:
            state = orjson.loads(meta)
            w.applied_offset = state["applied_offset"]
            w.closed_before_ms = state["closed_before_ms"]
            self.saved_meta = (w.applied_offset, w.closed_before_ms)

        for record, spans in buckets:
            slot = w.hold(record, spans)
            self.stored.add(slot)
            w.dirty.discard(slot)
        known = {identity(r) for r in w.outbox}
        for record, spans in sorted(records, key=lambda r: r[0]["last_offset"]):
            if identity(record) not in known:
                w.settle(record, spans)
        log.info(
            "%s: restored %d open windows, %d corrections, %d undelivered records, "
            "%d span identities",
            w.source,
            len(w.open),
            len(w.corrections),
            len(w.outbox),
            len(w.seen),
        )

    def _restore_legacy(self, data: bytes) -> None:
        # Everything in it is saved again under its own key.
        w = self.windows
        state = orjson.loads(data)
        w.applied_offset = state["applied_offset"]
        w.closed_before_ms = state["closed_before_ms"]
        # Its buckets all say kind "window"; the list they are in tells.
        for kind, key in ((WINDOW, "open"), (CORRECTION, "corrections")):
            for record in state[key]:
                record["kind"] = kind
                w.dirty.add(w.hold(record_with_decimal(record)))
        for record in state["outbox"]:
            w.outbox.append(record_with_decimal(record))
            w.unsaved.append((record, array(HASH_TYPECODE)))


def partition_keys(data: Mapping[bytes, Any], partition: int) -> list[bytes]:
    """Every key of ``partition``'s state in ``data``, either layout."""
    prefix = f"{partition}:".encode()
    legacy = str(partition).encode()
    return [k for k in data if k == legacy or k.startswith(prefix)]


def _hash(data: bytes) -> bytes:
    return hashlib.sha256(data).hexdigest()[:32].encode()


def _dumps(record: dict[str, Any], spans: array) -> bytes:
    return orjson.dumps({**record, SPAN_HASHES: hashes_to_text(spans)}, default=str)


def _loads(value: bytes) -> tuple[dict[str, Any], array]:
    record = orjson.loads(value)
    spans = hashes_from_text(record.pop(SPAN_HASHES, None))
    return record_with_decimal(record), spans


def _order(slot: Slot) -> tuple[Any, ...]:
    start_ms, key = slot
    return (start_ms, *key)
