"""How a partition's metric windows are kept in the changelog, key by key.

Table ``metrics-windows`` holds, for input partition ``<p>`` (keys are bytes):

- ``<p>:m``: the meta, the last input offset applied and the window start
  before which windows are closed;
- ``<p>:b:<slot hash>``: one open or correction bucket;
- ``<p>:o:<identity hash>``: one closed record not yet delivered;
- ``<p>``: the whole state as one value, the layout of earlier versions;
  read when no meta exists, then deleted.

Each value is small (a bucket is bounded by its sketch, tens of kB at most),
so no state outgrows the broker's message size, and a save writes only what
changed. A save is three phases, each confirmed by Kafka before the next:

1. new outbox records and changed buckets;
2. deletions of the buckets closed into those records, and the meta;
3. deletions of delivered records and of the old single value.

Any crash leaves some writes of the current phase durable, all of the
earlier ones. The restore stays exact because every durable bucket holds all
of its slot's requests up to its own last offset, every durable record up to
its own, and a bucket still present beside the record closed from it (same
first offset) is that record's earlier self: replayed input is counted in a
slot only past what the slot already holds (see ``PartitionWindows.apply``).
A delivered record is deleted only once a saved meta covers its offsets.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

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

    def changes(self) -> list[Write]:
        """Phase 1: the records closed and the buckets changed since the save."""
        w = self.windows
        writes = [Write(self.record_key(r), _dumps(r)) for r in w.unsaved]
        for slot in sorted(w.dirty, key=_order):
            record = w.bucket_record(slot)
            if record is not None:
                writes.append(Write(self.bucket_key(slot), _dumps(record)))
        return writes

    def commit(self) -> list[Write]:
        """Phase 2: closed buckets deleted, and the meta, if anything changed."""
        w = self.windows
        writes = [
            Write(self.bucket_key(slot), None)
            for slot in sorted(w.dirty, key=_order)
            if slot in self.stored and w.bucket(slot) is None
        ]
        meta = (w.applied_offset, w.closed_before_ms)
        if writes or w.dirty or w.unsaved or meta != self.saved_meta:
            value = {
                "v": META_VERSION,
                "applied_offset": w.applied_offset,
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
        w.unsaved = []
        self.saved_meta = (w.applied_offset, w.closed_before_ms)
        w.forget_counted(w.applied_offset)

    def cleanup(self) -> list[Write]:
        """Phase 3: delivered records a saved meta covers, and the old value."""
        applied = -1 if self.saved_meta is None else self.saved_meta[0]
        writes = [
            Write(self.record_key(r), None)
            for r in self.delivered
            if r["last_offset"] <= applied
        ]
        if self.legacy and self.saved_meta is not None:
            writes.append(Write(self.legacy_key, None))
        return writes

    def cleaned(self) -> None:
        """Phase 3 is confirmed."""
        applied = -1 if self.saved_meta is None else self.saved_meta[0]
        self.delivered = [r for r in self.delivered if r["last_offset"] > applied]
        if self.saved_meta is not None:
            self.legacy = False

    def sent(self, records: Iterable[dict[str, Any]]) -> None:
        """The outbox ``records`` are delivered; their keys may go."""
        self.delivered += records
        self.windows.outbox = []

    def restore(self, data: Mapping[bytes, bytes]) -> None:
        """Rebuild the windows from the table's values of this partition."""
        w = self.windows
        meta = data.get(self.meta_key)
        buckets: list[dict[str, Any]] = []
        records: list[dict[str, Any]] = []
        for key, value in data.items():
            if not key.startswith(self.prefix) or value is None:
                continue
            kind = key[len(self.prefix) : len(self.prefix) + 2]
            if kind == b"b:":
                buckets.append(record_with_decimal(orjson.loads(value)))
            elif kind == b"o:":
                records.append(record_with_decimal(orjson.loads(value)))

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

        for record in buckets:
            slot = w.hold(record)
            self.stored.add(slot)
            w.dirty.discard(slot)
        known = {identity(r) for r in w.outbox}
        for record in sorted(records, key=lambda r: r["last_offset"]):
            if identity(record) not in known:
                w.settle(record)
        log.info(
            "%s: restored %d open windows, %d corrections, %d undelivered records",
            w.source,
            len(w.open),
            len(w.corrections),
            len(w.outbox),
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
            w.unsaved.append(record)


def partition_keys(data: Mapping[bytes, Any], partition: int) -> list[bytes]:
    """Every key of ``partition``'s state in ``data``, either layout."""
    prefix = f"{partition}:".encode()
    legacy = str(partition).encode()
    return [k for k in data if k == legacy or k.startswith(prefix)]


def _hash(data: bytes) -> bytes:
    return hashlib.sha256(data).hexdigest()[:32].encode()


def _dumps(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record, default=str)


def _order(slot: Slot) -> tuple[Any, ...]:
    start_ms, key = slot
    return (start_ms, *key)
