"""Mergeable quantile sketches (DDSketch) and their bin encoding.

A sketch travels as its bins: integer keys of the logarithmic mapping with
their counts, plus a count of zero values. Merging two sketches adds counts
key by key, so windows from several partitions, and their corrections, merge
exactly; a quantile read from the merge is within ``RELATIVE_ACCURACY`` of the
true value. The SQL functions of the metrics migration use the same keys.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from ddsketch import DDSketch

RELATIVE_ACCURACY = 0.01
GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
# Values below this (in seconds) count as zero: no bin for sub-nanosecond.
MIN_VALUE_S = 1e-9


class Sketch:
    """Bins of a DDSketch: key -> count, and the count of zeros."""

    __slots__ = ("_mapping", "bins", "zero_count")

    def __init__(self) -> None:
        self.bins: dict[int, int] = {}
        self.zero_count = 0
        self._mapping = _mapping()

    @property
    def count(self) -> int:
        return self.zero_count + sum(self.bins.values())

    def add(self, value_s: float) -> None:
        """Count one value; negatives (clock skew) count as zero."""
        if not value_s > MIN_VALUE_S:
            self.zero_count += 1
            return
        key = self._mapping.key(value_s)
        self.bins[key] = self.bins.get(key, 0) + 1

    def merge(self, other: Sketch) -> None:
        self.zero_count += other.zero_count
        for key, count in other.bins.items():
            self.bins[key] = self.bins.get(key, 0) + count

    def quantile(self, q: float) -> float | None:
        """The value at rank ``q * (count - 1)``, or None when empty."""
        total = self.count
        if total == 0:
            return None
        rank = q * (total - 1)
        seen = self.zero_count
        if seen > rank:
            return 0.0
        for key in sorted(self.bins):
            seen += self.bins[key]
            if seen > rank:
                return float(self._mapping.value(key))
        return float(self._mapping.value(max(self.bins)))

    def to_record(self) -> dict[str, Any]:
        keys = sorted(self.bins)
        return {
            "relative_accuracy": RELATIVE_ACCURACY,
            "zero_count": self.zero_count,
            "keys": keys,
            "counts": [self.bins[k] for k in keys],
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Sketch:
        sketch = cls()
        sketch.zero_count = int(record["zero_count"])
        sketch.bins = dict(zip(record["keys"], record["counts"], strict=True))
        return sketch

    def to_json(self) -> dict[str, int]:
        """The form stored in PostgreSQL: {"key": count}, zeros under "z"."""
        out = {str(k): c for k, c in self.bins.items()}
        if self.zero_count:
            out["z"] = self.zero_count
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, int]) -> Sketch:
        sketch = cls()
        for key, count in data.items():
            if key == "z":
                sketch.zero_count += int(count)
            else:
                sketch.bins[int(key)] = int(count)
        return sketch


def exact_quantile(values: Iterable[float], q: float) -> float:
    """The true value at rank ``floor(q * (n - 1))``, to check sketches against."""
    ordered = sorted(max(v, 0.0) for v in values)
    return ordered[math.floor(q * (len(ordered) - 1))]


def _mapping() -> Any:
    # DDSketch's own logarithmic mapping; its keys are what we store.
    return DDSketch(RELATIVE_ACCURACY)._mapping
