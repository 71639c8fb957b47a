"""Object names of the archive and the per-partition manifest of uploads.

A Parquet object lives at
``tenant=<t>/date=<YYYY-MM-DD>/hour=<HH>/<topic>-<partition>-<first>-<last>.parquet``
where first and last are the Kafka offsets of the first and last record whose
spans it holds for that Hive folder. One Kafka partition interleaves tenants
and hours, so several files are open at once, and the committed offset can
lag behind records already uploaded. The manifest
``_manifests/<topic>/<partition>.json`` lists every uploaded (folder, first,
last) range. Each round of uploads is announced in it first, as pending
ranges, and confirmed after, all before the offset commit. On a replay, a
record at offset o whose spans belong to folder d is skipped when a manifest
range of d covers o: only one file per folder is open at a time, so every
record of d between first and last is in that object. A pending range left
by a crash is settled when the manifest is read again: its object exists
(uploads are atomic), so it counts as uploaded, or it does not, and is
dropped. A later upload never writes those records a second time.
"""

from __future__ import annotations

import bisect
import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote, unquote

import orjson

MANIFEST_DIR = "_manifests"
_OBJECT = re.compile(
    r"^(?P<topic>.+)-(?P<partition>\d+)-(?P<first>\d{20})-(?P<last>\d{20})\.parquet$"
)
_HIVE = re.compile(
    r"^tenant=(?P<tenant>[^/]+)/date=(?P<date>[0-9-]{10})/hour=(?P<hour>\d{2})/"
)


def hive_dir(tenant: str, hour: datetime) -> str:
    """The Hive folder of a tenant's spans started in ``hour`` (UTC)."""
    return f"tenant={quote(tenant, safe='')}/date={hour:%Y-%m-%d}/hour={hour:%H}"


def parse_hive(key: str) -> tuple[str, str, int] | None:
    """(tenant, date, hour) of an object key, or None outside the layout."""
    match = _HIVE.match(key)
    if match is None:
        return None
    return unquote(match["tenant"]), match["date"], int(match["hour"])


def object_name(topic: str, partition: int, first: int, last: int) -> str:
    return f"{topic}-{partition}-{first:020d}-{last:020d}.parquet"


def parse_object_name(name: str) -> tuple[str, int, int, int] | None:
    """(topic, partition, first, last) of an object's file name."""
    match = _OBJECT.match(name)
    if match is None:
        return None
    return (
        match["topic"],
        int(match["partition"]),
        int(match["first"]),
        int(match["last"]),
    )


def manifest_key(topic: str, partition: int) -> str:
    return f"{MANIFEST_DIR}/{topic}/{partition}.json"


@dataclass
class Manifest:
    """Uploaded and announced offset ranges of one topic-partition, by folder."""

    topic: str
    partition: int
    ranges: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    # Uploads announced but not yet confirmed: a crash may have cut them off.
    pending: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    # Wall-clock time of the latest announcement (0: none recorded).
    announced_unix_s: float = 0.0
    _merged: dict[str, list[tuple[int, int]]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def covers(self, folder: str, offset: int) -> bool:
        """Whether an uploaded range of ``folder`` holds ``offset``."""
        spans = self._merged.get(folder)
        if spans is None:
            spans = self._merged[folder] = _merge(self.ranges.get(folder, []))
        index = bisect.bisect_right(spans, (offset, 1 << 62)) - 1
        return index >= 0 and spans[index][0] <= offset <= spans[index][1]

    def add(self, folder: str, first: int, last: int) -> None:
        bisect.insort(self.ranges.setdefault(folder, []), (first, last))
        self._merged.pop(folder, None)

    def listed(self, folder: str, first: int, last: int) -> bool:
        """Whether this exact object is uploaded or announced."""
        exact = (first, last)
        uploaded = exact in self.ranges.get(folder, ())
        return uploaded or exact in self.pending.get(folder, ())

    def announce(self, folder: str, first: int, last: int) -> None:
        """Name an upload about to start, so a crash cannot orphan its object."""
        bisect.insort(self.pending.setdefault(folder, []), (first, last))
        self.announced_unix_s = time.time()

    def settle(self, folder: str, first: int, last: int, uploaded: bool) -> None:
        """An announced upload is done (uploaded) or will not happen now."""
        spans = self.pending.get(folder, [])
        if (first, last) in spans:
            spans.remove((first, last))
        if not spans:
            self.pending.pop(folder, None)
        if uploaded:
            self.add(folder, first, last)

    def prune(self, low_offset: int) -> int:
        """Forget ranges wholly below ``low_offset`` (gone from Kafka)."""
        dropped = 0
        for folder in list(self.ranges):
            kept = [r for r in self.ranges[folder] if r[1] >= low_offset]
            dropped += len(self.ranges[folder]) - len(kept)
            if kept:
                self.ranges[folder] = kept
            else:
                del self.ranges[folder]
        self._merged.clear()
        return dropped

    def to_bytes(self) -> bytes:
        doc: dict[str, Any] = {
            "topic": self.topic,
            "partition": self.partition,
            "ranges": _rows(self.ranges),
            "pending": _rows(self.pending),
            "announced_unix_s": self.announced_unix_s,
        }
        return orjson.dumps(doc)

    @classmethod
    def from_bytes(cls, topic: str, partition: int, data: bytes | None) -> Manifest:
        manifest = cls(topic, partition)
        if not data:
            return manifest
        doc = orjson.loads(data)
        for folder, first, last in doc["ranges"]:
            manifest.add(folder, int(first), int(last))
        for folder, first, last in doc.get("pending", ()):
            bisect.insort(manifest.pending.setdefault(folder, []), (first, last))
        manifest.announced_unix_s = float(doc.get("announced_unix_s", 0.0))
        return manifest


def _rows(ranges: dict[str, list[tuple[int, int]]]) -> list[list[Any]]:
    return [
        [folder, first, last]
        for folder, spans in sorted(ranges.items())
        for first, last in spans
    ]


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted ranges joined where they overlap or touch, for ``covers``."""
    merged: list[tuple[int, int]] = []
    for first, last in spans:
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged
