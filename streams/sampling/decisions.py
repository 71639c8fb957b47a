"""Decisions remembered per trace so that late spans follow them.

In memory, a cache bounded by count (oldest decision evicted first); behind
it the decisions table, whose changelog makes them survive restarts.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import orjson

from streams.sampling.metrics import SamplerMetrics
from streams.sampling.state import StateStore

# Decisions of one partition read per expiry pass of a tick.
EXPIRY_SCAN_KEYS = 2000

# Queue one table write: (store method, partition, *arguments).
Write = Callable[..., None]


@dataclass(frozen=True, slots=True)
class Decision:
    kept: bool
    policy: str | None
    adjusted_count: float | None
    partition: int
    decided_s: float

    def encode(self) -> bytes:
        fields = (self.kept, self.policy, self.adjusted_count)
        return orjson.dumps([*fields, self.partition, self.decided_s])

    @classmethod
    def decode(cls, data: bytes) -> Decision:
        kept, policy, adjusted_count, partition, decided_s = orjson.loads(data)
        return cls(bool(kept), policy, adjusted_count, int(partition), decided_s)


class DecisionCache:
    """Decisions in memory, oldest first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, Decision] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, trace_id: str) -> Decision | None:
        return self._items.get(trace_id)

    def put(self, trace_id: str, decision: Decision) -> list[tuple[str, Decision]]:
        """Remember ``decision``; return the decisions evicted to make room."""
        self._items[trace_id] = decision
        self._items.move_to_end(trace_id)
        evicted = []
        while len(self._items) > self.capacity:
            evicted.append(self._items.popitem(last=False))
        return evicted

    def forget(self, trace_id: str) -> None:
        self._items.pop(trace_id, None)

    def expire(self, cutoff_s: float) -> list[tuple[str, Decision]]:
        """Drop the oldest decisions while they were made before ``cutoff_s``."""
        expired = []
        while self._items:
            oldest = next(iter(self._items.values()))
            if oldest.decided_s >= cutoff_s:
                break
            expired.append(self._items.popitem(last=False))
        return expired

    def forget_partitions(self, partitions: set[int]) -> None:
        """Drop the decisions of partitions this worker no longer owns."""
        gone = [t for t, d in self._items.items() if d.partition in partitions]
        for trace_id in gone:
            del self._items[trace_id]

    def clear(self) -> None:
        self._items.clear()


class Remembered:
    """Decisions for late spans: a bounded cache, backed by the decisions table.

    With a table on disk (the RocksDB store) every decision stays in it for
    ``ttl_s``: a cache miss is looked up there, and a slow scan deletes what
    is older. With the memory store the table mirrors the cache, so what the
    cache evicts or ages out is deleted from the table too.
    """

    def __init__(
        self,
        capacity: int,
        ttl_s: float,
        store: StateStore,
        write: Write,
        metrics: SamplerMetrics,
    ) -> None:
        self.cache = DecisionCache(capacity)
        self.ttl_s = ttl_s
        self.store = store
        self.write = write
        self.metrics = metrics
        self.on_disk = store.decisions_on_disk
        # Where the expiry scan of each partition resumes.
        self._cursors: dict[int, bytes | None] = {}
        # Decided time of the newest decision forgotten so far.
        self._forgotten_s = 0.0

    def __len__(self) -> int:
        return len(self.cache)

    def get(self, trace_id: str, partition: int) -> Decision | None:
        decision = self.cache.get(trace_id)
        if decision is not None or not self.on_disk:
            return decision
        value = self.store.get_decision(partition, trace_id)
        if value is None:
            return None
        decision = Decision.decode(value)
        self._evicted(self.cache.put(trace_id, decision))
        return decision

    def put(self, trace_id: str, decision: Decision) -> list[tuple[str, Decision]]:
        """Remember ``decision``; the evicted decisions to delete from the table."""
        return self._evicted(self.cache.put(trace_id, decision))

    def forget(self, trace_id: str) -> None:
        self.cache.forget(trace_id)

    def forget_partitions(self, partitions: set[int]) -> None:
        self.cache.forget_partitions(partitions)
        for partition in partitions:
            self._cursors.pop(partition, None)

    def forgotten_before_s(self, now_s: float) -> float:
        """Decisions made before this time may be forgotten."""
        return max(self._forgotten_s, now_s - self.ttl_s)

    def restore(
        self, decisions: Iterable[tuple[bytes, bytes]], partitions: set[int]
    ) -> None:
        """Reload the cache after a recovery (the memory store's table only:
        a table on disk is read on demand); evicted ones leave the table."""
        self.cache.clear()
        self._cursors.clear()
        if self.on_disk:
            return
        known = [(k.decode(), Decision.decode(v)) for k, v in decisions]
        for trace_id, decision in sorted(known, key=lambda kd: kd[1].decided_s):
            if decision.partition in partitions:
                self._delete(self.put(trace_id, decision))

    def expire(self, now_s: float, partitions: set[int]) -> None:
        """Forget decisions older than the TTL: from the cache, and from the
        table (on disk, a slice of each partition per call)."""
        cutoff_s = now_s - self.ttl_s
        aged = self.cache.expire(cutoff_s)
        if not self.on_disk:
            self._delete(aged)
            self.metrics.decisions_expired += len(aged)
            return
        for partition in partitions:
            after = self._cursors.get(partition)
            scanned = self.store.scan_decisions(partition, after, EXPIRY_SCAN_KEYS)
            for key, value in scanned:
                decision = Decision.decode(value)
                if decision.decided_s < cutoff_s:
                    self._delete([(key.decode(), decision)])
                    self.metrics.decisions_expired += 1
            self._cursors[partition] = (
                scanned[-1][0] if len(scanned) == EXPIRY_SCAN_KEYS else None
            )

    def _evicted(
        self, evicted: list[tuple[str, Decision]]
    ) -> list[tuple[str, Decision]]:
        self.metrics.decision_cache_evictions += len(evicted)
        if self.on_disk:
            # Still in the table, found there by the next late span.
            return []
        for _, decision in evicted:
            self._forgotten_s = max(self._forgotten_s, decision.decided_s)
        return evicted

    def _delete(self, decisions: list[tuple[str, Decision]]) -> None:
        for trace_id, decision in decisions:
            self._forgotten_s = max(self._forgotten_s, decision.decided_s)
            self.write(self.store.delete_decision, decision.partition, trace_id)
