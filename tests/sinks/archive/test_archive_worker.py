"""The archive handler's rounds against a local folder, without Kafka.

Records are decoded SpanBatch payloads in hand-made Items, handed to
``write`` in batches the way the consume loop does; a crash is an exception
raised by the store at a chosen step.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from otlp_batches import span_batches, traces

import schemas
from sinks.archive import layout, manifests
from sinks.archive.layout import Manifest
from sinks.archive.manifests import PreviousRoundRunning
from sinks.archive.settings import ArchiveSettings
from sinks.archive.storage import LocalStore, WriteConflict
from sinks.archive.worker import ArchiveHandler, RoundBudget
from sinks.consumer import Item

CODEC = schemas.codec(schemas.SPAN_BATCH)
TOPIC = "llm.spans"


class FakeMessage:
    def __init__(self, offset: int) -> None:
        self._offset = offset

    def topic(self) -> str:
        return TOPIC

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset


class Crash(Exception):
    """The process dies here."""


class Watched(LocalStore):
    """A local store that checks what readers could see after every write.

    ``crash_on_confirm`` raises Crash at the first manifest write that
    follows an object upload: the process dies between the two.
    """

    def __init__(self, root: Path, crash_on_confirm: bool = False) -> None:
        super().__init__(root)
        self.crash_on_confirm = crash_on_confirm
        self.uploaded = False
        self.writes = 0

    def put(self, key: str, data: bytes) -> None:
        if key.startswith(layout.MANIFEST_DIR):
            self._maybe_crash()
        super().put(key, data)
        self.writes += 1
        if key.endswith(".parquet"):
            self.uploaded = True
            assert_no_overlap(self)

    def put_if(self, key: str, data: bytes, version: str | None) -> str:
        self._maybe_crash()
        return super().put_if(key, data, version)

    def delete(self, key: str) -> None:
        self.writes += 1
        super().delete(key)

    def _maybe_crash(self) -> None:
        if self.crash_on_confirm and self.uploaded:
            raise Crash


def assert_no_overlap(store: LocalStore) -> None:
    """No two objects of one partition and folder hold the same offsets."""
    by_folder: dict[str, list[tuple[int, int]]] = {}
    for key in store.list():
        parsed = layout.parse_object_name(key.rpartition("/")[2])
        if parsed is not None:
            by_folder.setdefault(key.rpartition("/")[0], []).append(parsed[2:])
    for folder, ranges in by_folder.items():
        ranges.sort()
        for (_, last), (first, _) in itertools.pairwise(ranges):
            assert first > last, f"a reader sees overlapping objects in {folder}"


def records(count: int = 8) -> list[Item]:
    out = []
    for offset, (_, value) in enumerate(span_batches(traces(count, "acme"))):
        record = CODEC.decode(value)
        out.append(Item(FakeMessage(offset), record, size=len(record["spans"])))  # type: ignore[arg-type]
    return out


# A round's storage time at the default poll interval: two thirds of it.
ROUND_S = ArchiveSettings().max_poll_interval_s * 2 / 3


def handler(root: Path, store: LocalStore, **overrides: Any) -> ArchiveHandler:
    values: dict[str, Any] = {"archive_url": str(root), "max_file_bytes": 6000}
    values.update(overrides)
    return ArchiveHandler(ArchiveSettings(**values), store)


def archived_span_ids(root: Path) -> list[str]:
    ids: list[str] = []
    for path in root.glob("tenant=*/*/*/*.parquet"):
        ids += pq.read_table(path).column("span_id").to_pylist()
    return sorted(ids)


async def write_in_batches(
    archive: ArchiveHandler, items: list[Item], size: int
) -> None:
    for start in range(0, len(items), size):
        await archive.write(items[start : start + size], asyncio.Event())


def later_by(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Move the wall clock the manifests read forward by ``seconds``."""
    now = time.time() + seconds
    monkeypatch.setattr(manifests.time, "time", lambda: now)


async def test_a_crash_between_upload_and_manifest_never_shows_a_span_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = records()
    crashing = Watched(tmp_path, crash_on_confirm=True)
    with pytest.raises(Crash):
        await write_in_batches(handler(tmp_path, crashing), items, 2)
    assert list(tmp_path.glob("tenant=*/*/*/*.parquet")), "the crash came too early"
    later_by(monkeypatch, ROUND_S + manifests.CLOCK_SKEW_S)

    # The restart reads from the same committed offset, batched otherwise.
    store = Watched(tmp_path)
    again = handler(tmp_path, store)
    await write_in_batches(again, [Item(i.message, i.payload) for i in items], 5)
    await again.close(asyncio.Event())

    assert again.skipped_spans > 0, "the object of the crashed run was adopted"
    expected = sorted(s["span_id"] for i in items for s in i.payload["spans"])
    assert archived_span_ids(tmp_path) == expected


async def test_the_next_owner_waits_out_an_announced_round_before_settling_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = records()
    crashing = Watched(tmp_path, crash_on_confirm=True)
    with pytest.raises(Crash):
        await write_in_batches(handler(tmp_path, crashing), items, 2)
    # The replaced member could still be uploading what it announced: an
    # object settled as missing now would be orphaned when it lands.
    store = Watched(tmp_path)
    again = handler(tmp_path, store)
    batch = [Item(i.message, i.payload) for i in items]

    with pytest.raises(PreviousRoundRunning):
        await again.write(batch, asyncio.Event())
    assert store.writes == 0

    later_by(monkeypatch, ROUND_S + manifests.CLOCK_SKEW_S)
    await again.write(batch, asyncio.Event())
    await again.close(asyncio.Event())
    expected = sorted(s["span_id"] for i in items for s in i.payload["spans"])
    assert archived_span_ids(tmp_path) == expected


async def test_a_partition_no_longer_ours_gets_no_storage_writes(
    tmp_path: Path,
) -> None:
    store = Watched(tmp_path)
    archive = handler(tmp_path, store)
    await archive.write(records(2), asyncio.Event())
    writes = store.writes
    archive.owns = lambda _position: False

    offsets = await archive.close(asyncio.Event())

    assert store.writes == writes
    assert offsets == []


async def test_what_does_not_fit_in_the_round_is_left_to_the_next_owner(
    tmp_path: Path,
) -> None:
    store = Watched(tmp_path)
    archive = handler(tmp_path, store, max_file_bytes=10**9)
    await archive.write(records(3), asyncio.Event())
    archive._new_budget = lambda: RoundBudget(uploads_s=0.0, total_s=60.0)  # type: ignore[method-assign]

    offsets = await archive.close(asyncio.Event())

    assert not list(tmp_path.glob("tenant=*/*/*/*.parquet"))
    # The commit stops before the unwritten file: the next owner reads it.
    assert [(tp.partition, tp.offset) for tp in offsets] == [(0, 0)]
    manifest = Manifest.from_bytes(TOPIC, 0, store.get(layout.manifest_key(TOPIC, 0)))
    assert manifest.pending == {}


async def test_a_second_writer_of_the_manifest_is_refused(tmp_path: Path) -> None:
    items = records(4)
    # Both members read the manifest; the new owner writes first.
    stale = handler(tmp_path, LocalStore(tmp_path))
    await stale.write(items[:1], asyncio.Event())
    owner = handler(tmp_path, LocalStore(tmp_path))
    await owner.write(items[:1], asyncio.Event())
    await owner.close(asyncio.Event())

    with pytest.raises(WriteConflict):
        await stale.close(asyncio.Event())


async def test_low_watermark_is_asked_off_the_event_loop(tmp_path: Path) -> None:
    asked_from: list[int] = []

    def low_watermark(_position: tuple[str, int]) -> int | None:
        asked_from.append(threading.get_ident())
        return None

    archive = handler(tmp_path, LocalStore(tmp_path))
    archive.low_watermark = low_watermark
    await archive.write(records(2), asyncio.Event())
    await archive.close(asyncio.Event())

    assert asked_from
    assert threading.get_ident() not in asked_from
