"""Decisions remembered per trace so that late spans follow them.

Bounded by count, oldest decision evicted first; the cache mirrors a Faust
table whose changelog makes it survive restarts.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import orjson


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

    def forget_partitions(self, partitions: set[int]) -> None:
        """Drop the decisions of partitions this worker no longer owns."""
        gone = [t for t, d in self._items.items() if d.partition in partitions]
        for trace_id in gone:
            del self._items[trace_id]

    def clear(self) -> None:
        self._items.clear()
