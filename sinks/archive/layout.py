"""Object names of the archive and the per-partition manifest of uploads.

A Parquet object lives at
``tenant=<t>/date=<YYYY-MM-DD>/hour=<HH>/<topic>-<partition>-<first>-<last>.parquet``
where first and last are the Kafka offsets of the first and last record whose
spans it holds for that Hive folder. One Kafka partition interleaves tenants
and hours, so several files are open at once, and the committed offset can
lag behind records already uploaded. The manifest
``_manifests/<topic>/<partition>.json`` lists every uploaded (folder, first,
last) range; it is written after the uploads and before the offset commit.
On a replay, a record at offset o whose spans belong to folder d is skipped
when a manifest range of d covers o: only one file per folder is open at a
time, so every record of d between first and last is in that object. An
object uploaded but missing from the manifest (crash before the manifest
write) is superseded: the new upload of an overlapping range deletes it.
"""

from __future__ import annotations

import bisect
import re
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
    """Uploaded offset ranges of one topic-partition, by Hive folder."""

    topic: str
    partition: int
    ranges: dict[str, list[tuple[int, int]]] = field(default_factory=dict)

    def covers(self, folder: str, offset: int) -> bool:
        spans = self.ranges.get(folder)
        if not spans:
            return False
        index = bisect.bisect_right(spans, (offset, 1 << 62)) - 1
        return index >= 0 and spans[index][0] <= offset <= spans[index][1]

    def add(self, folder: str, first: int, last: int) -> None:
        bisect.insort(self.ranges.setdefault(folder, []), (first, last))

    def listed(self, folder: str, first: int, last: int) -> bool:
        return (first, last) in self.ranges.get(folder, ())

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
        return dropped

    def to_bytes(self) -> bytes:
        doc: dict[str, Any] = {
            "topic": self.topic,
            "partition": self.partition,
            "ranges": [
                [folder, first, last]
                for folder, spans in sorted(self.ranges.items())
                for first, last in spans
            ],
        }
        return orjson.dumps(doc)

    @classmethod
    def from_bytes(cls, topic: str, partition: int, data: bytes | None) -> Manifest:
        manifest = cls(topic, partition)
        if not data:
            return manifest
        for folder, first, last in orjson.loads(data)["ranges"]:
            manifest.add(folder, int(first), int(last))
        return manifest
