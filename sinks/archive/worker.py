"""The archive sink worker: llm.spans into Hive-partitioned Parquet objects.

Records are routed span by span into one open file per (Kafka partition,
Hive folder). A file is rolled (written as zstd Parquet and uploaded) when it
reaches ``max_file_bytes``, ``max_file_age_s``, or when too many are open.
Each round of uploads is announced in the partition's manifest, uploaded,
then confirmed there, and only then is the offset committed: the first
offset of the oldest file still open on that partition, or past the last
record read. ``layout`` explains why replays after a crash write every span
once. A round's storage work stays well under the group's poll interval
(what does not fit waits for the next round), and no storage write is made
for a partition the consumer no longer owns.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pyarrow.parquet as pq
from confluent_kafka import Message, TopicPartition

import schemas
from llmobs.errors import RetriableStageError, SchemaError, StageError
from llmobs.retry import Backoff, retry_async
from llmobs.settings import describe
from sinks.archive import layout
from sinks.archive.layout import Manifest
from sinks.archive.manifests import ManifestBook
from sinks.archive.schema import Rows, start_hour
from sinks.archive.settings import ArchiveSettings
from sinks.archive.storage import Store, open_store
from sinks.consumer import BatchConsumer, Item, LoopSettings, Position

log = logging.getLogger(__name__)

T = TypeVar("T")

# Records replayed from the archive carry this header; archiving them again
# would only duplicate what the archive already holds.
HEADER_REPLAYED = "llmobs.replayed_from"


@dataclass
class OpenFile:
    """Spans of one Kafka partition and one Hive folder, not yet uploaded."""

    position: Position
    folder: str
    first: int
    last: int
    opened_s: float = field(default_factory=time.monotonic)
    rows: Rows = field(default_factory=Rows)

    @property
    def key(self) -> str:
        topic, partition = self.position
        name = layout.object_name(topic, partition, self.first, self.last)
        return f"{self.folder}/{name}"


@dataclass
class RoundBudget:
    """Storage time of one write, tick or close, counted from its start."""

    uploads_s: float
    total_s: float
    started_s: float = field(default_factory=time.monotonic)

    def may_upload(self) -> bool:
        return time.monotonic() - self.started_s < self.uploads_s

    def left_s(self) -> float:
        return max(0.0, self.total_s - (time.monotonic() - self.started_s))


class ArchiveHandler:
    """Buffers spans into open files and uploads them, manifest, then commit."""

    def __init__(self, settings: ArchiveSettings, store: Store | None = None) -> None:
        self.settings = settings
        self.store = store or open_store(
            settings.archive_url,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=settings.s3_secret_access_key,
            multipart_chunk_bytes=settings.multipart_chunk_bytes,
        )
        self.low_watermark: Callable[[Position], int | None] = lambda _p: None
        self.owns: Callable[[Position], bool] = lambda _p: True
        self.archived_spans = 0
        self.skipped_spans = 0
        self.files = 0
        self.bytes_written = 0
        self._codec = schemas.codec(schemas.SPAN_BATCH)
        self._backoff = Backoff(deadline_s=settings.upload_retry_deadline_s)
        self._open: dict[tuple[Position, str], OpenFile] = {}
        self._book = ManifestBook(self.store, self._storage, self._new_budget().total_s)
        self._read_next: dict[Position, int] = {}
        self._budget = self._new_budget()

    def counters(self) -> list[tuple[str, str, float]]:
        return [
            (
                "spans_archived",
                "Spans written to uploaded Parquet files.",
                self.archived_spans,
            ),
            ("files_uploaded", "Parquet files uploaded.", self.files),
            ("bytes_uploaded", "Bytes of Parquet files uploaded.", self.bytes_written),
        ]

    def decode(self, message: Message) -> Item:
        headers = message.headers() or []
        if any(header[0] == HEADER_REPLAYED for header in headers):
            return Item(message)
        try:
            record = self._codec.decode(message.value() or b"")
        except SchemaError as exc:
            item = Item(message)
            item.kill("schema_error", str(exc))
            return item
        return Item(message, record, size=len(record["spans"]))

    async def write(
        self, items: list[Item], stop: asyncio.Event
    ) -> list[TopicPartition] | None:
        self._budget = self._new_budget()
        # Every manifest first: one that must wait holds the whole batch
        # before any of it is routed, so that it can be handed in again.
        for position in sorted({item.position for item in items}):
            await self._book.load(position)
        for item in items:
            position = item.position
            self._read_next[position] = max(
                self._read_next.get(position, 0), item.offset + 1
            )
            if item.dead or item.payload is None:
                continue
            manifest = await self._book.load(position)
            try:
                self._route(item, manifest)
            except (IndexError, KeyError, TypeError, ValueError, OverflowError) as exc:
                item.kill("invalid_record", f"{type(exc).__name__}: {exc}")

        due = [
            f
            for f in self._open.values()
            if f.rows.bytes >= self.settings.max_file_bytes
        ]
        excess = len(self._open) - self.settings.max_open_files
        if excess > 0:
            oldest = sorted(self._open.values(), key=lambda f: f.opened_s)
            due += [f for f in oldest[:excess] if f not in due]
        await self._roll(due, stop)
        return self._commit_offsets({item.position for item in items})

    def _route(self, item: Item, manifest: Manifest) -> None:
        record = item.payload
        position = item.position
        offset = item.offset
        where = (position[0], position[1], offset)
        resources = len(record["resources"])
        for span in record["spans"]:
            if not 0 <= span["resource_index"] < resources:
                raise IndexError(f"resource_index {span['resource_index']}")
        folders: dict[str, str] = {}
        for span in record["spans"]:
            hour = start_hour(span)
            folder = folders.get(str(hour))
            if folder is None:
                folder = folders[str(hour)] = layout.hive_dir(record["tenant"], hour)
            if manifest.covers(folder, offset):
                self.skipped_spans += 1
                continue
            key = (position, folder)
            open_file = self._open.get(key)
            if open_file is None:
                open_file = self._open[key] = OpenFile(position, folder, offset, offset)
            open_file.last = offset
            open_file.rows.add(record, span, where)

    async def tick(self, stop: asyncio.Event) -> list[TopicPartition] | None:
        self._budget = self._new_budget()
        now_s = time.monotonic()
        due = [
            f
            for f in self._open.values()
            if now_s - f.opened_s >= self.settings.max_file_age_s
        ]
        if not due:
            return None
        await self._roll(due, stop)
        return self._commit_offsets({f.position for f in due})

    async def close(self, stop: asyncio.Event) -> list[TopicPartition] | None:
        # Files that do not fit in the round stay unwritten; the commit stops
        # before them, so the partition's next owner reads them again.
        self._budget = self._new_budget()
        positions = {f.position for f in self._open.values()}
        await self._roll(list(self._open.values()), stop)
        return self._commit_offsets(positions | set(self._read_next))

    def revoke(self, positions: set[Position]) -> None:
        for key in [k for k in self._open if k[0] in positions]:
            del self._open[key]
        for position in positions:
            self._book.forget(position)
            self._read_next.pop(position, None)

    def _new_budget(self) -> RoundBudget:
        # Thirds of the poll interval: uploads start in the first, retries
        # end by the second, and the last is the margin before eviction.
        interval_s = self.settings.max_poll_interval_s
        return RoundBudget(uploads_s=interval_s / 3, total_s=interval_s * 2 / 3)

    async def _roll(self, files: list[OpenFile], stop: asyncio.Event) -> None:
        files = [f for f in files if self.owns(f.position)]
        positions = sorted({f.position for f in files})

        # Step 1: the round is announced, so that a crash cannot leave an
        # object that no manifest names.
        for f in files:
            self._book[f.position].announce(f.folder, f.first, f.last)
        announced = {p for p in positions if await self._write_manifest(p)}

        # Step 2: upload (removing stale twins) while the round has time.
        # A member replaced meanwhile may finish an upload it announced; the
        # next owner waits out a round's storage time before settling it.
        uploaded: set[tuple[Position, str]] = set()
        for f in files:
            if f.position not in announced or not self.owns(f.position):
                continue
            if not self._budget.may_upload():
                break
            await self._upload(f)
            uploaded.add((f.position, f.folder))
        if len(uploaded) < len(files):
            log.warning(
                "%d of %d due files left open for the next round "
                "(storage time of this round spent, or partition no longer ours)",
                len(files) - len(uploaded),
                len(files),
            )

        # Step 3: the manifests confirm the round before any offset moves.
        for f in files:
            done = (f.position, f.folder) in uploaded
            self._book[f.position].settle(f.folder, f.first, f.last, uploaded=done)
            if done:
                del self._open[(f.position, f.folder)]
        for position in announced:
            low = await asyncio.to_thread(self.low_watermark, position)
            if low is not None:
                self._book[position].prune(low)
            await self._write_manifest(position)

    async def _write_manifest(self, position: Position) -> bool:
        """Write the partition's manifest, if the partition is still ours."""
        if not self.owns(position):
            return False
        await self._book.write(position)
        return True

    async def _upload(self, open_file: OpenFile) -> None:
        data = await asyncio.to_thread(self._parquet, open_file.rows)
        key = open_file.key
        await self._storage(f"uploading {key}", self.store.put, key, data)
        await self._drop_superseded(open_file)
        self.files += 1
        self.archived_spans += open_file.rows.count
        self.bytes_written += len(data)
        log.debug(
            "uploaded %s: %d spans, %d bytes", key, open_file.rows.count, len(data)
        )

    def _parquet(self, rows: Rows) -> bytes:
        out = io.BytesIO()
        pq.write_table(
            rows.table(),
            out,
            compression="zstd",
            compression_level=self.settings.zstd_level,
        )
        return out.getvalue()

    async def _drop_superseded(self, open_file: OpenFile) -> None:
        """Delete unlisted objects (of another writer) overlapping this upload."""
        topic, partition = open_file.position
        manifest = self._book[open_file.position]
        prefix = f"{open_file.folder}/{topic}-{partition}-"
        keys = await self._storage(f"listing {prefix}", self.store.list, prefix)
        for key in keys:
            parsed = layout.parse_object_name(key.rpartition("/")[2])
            if parsed is None or parsed[:2] != (topic, partition):
                continue
            first, last = parsed[2], parsed[3]
            if (first, last) == (open_file.first, open_file.last):
                continue
            if manifest.listed(open_file.folder, first, last):
                continue
            if not first <= open_file.last or not open_file.first <= last:
                continue
            if not self.owns(open_file.position):
                return
            log.warning("removing %s, superseded by %s", key, open_file.key)
            await self._storage(f"deleting {key}", self.store.delete, key)

    async def _storage(self, what: str, call: Callable[..., T], *args: Any) -> T:
        # Retries end with the round's storage time, whatever the deadline.
        deadline_s = min(self._backoff.deadline_s, self._budget.left_s())
        try:
            return await retry_async(
                what,
                lambda: asyncio.to_thread(call, *args),
                retriable=(RetriableStageError,),
                backoff=dataclasses.replace(self._backoff, deadline_s=deadline_s),
            )
        except RetriableStageError as exc:
            # TODO(#6): hold the batch (BackendUnavailable) as the other sinks
            # do; a round cut short here leaves announced, unsettled files
            # whose second announcement the manifest book is not built for,
            # so the sink exits and its restart reads from the commit.
            raise StageError(
                f"archive storage unavailable for {deadline_s:.0f}s: {exc}"
            ) from exc

    def _commit_offsets(self, positions: set[Position]) -> list[TopicPartition]:
        offsets = []
        for position in sorted(positions):
            read_next = self._read_next.get(position)
            if read_next is None or not self.owns(position):
                continue
            firsts = [f.first for f in self._open.values() if f.position == position]
            offset = min(firsts) if firsts else read_next
            offsets.append(TopicPartition(position[0], position[1], offset))
        return offsets


class ArchiveSink:
    """Runs the archive handler over llm.spans."""

    def __init__(self, settings: ArchiveSettings, store: Store | None = None) -> None:
        self.settings = settings
        self.handler = ArchiveHandler(settings, store)
        self.loop = BatchConsumer(
            "archive sink",
            LoopSettings(
                kafka_bootstrap=settings.kafka_bootstrap,
                topic=settings.spans_topic,
                group_id=settings.group_id,
                dlq_topic=settings.dlq_topic,
                max_batch_size=settings.max_batch_spans,
                flush_interval_s=settings.flush_interval_s,
                max_idle_s=settings.max_idle_s,
                max_poll_interval_s=settings.max_poll_interval_s,
                metrics_address=settings.metrics_address,
            ),
            self.handler,
        )
        self.handler.low_watermark = self.loop.low_watermark
        self.handler.owns = self.loop.owns

    async def run(self, stop: asyncio.Event) -> None:
        """Archive until ``stop`` is set (or the topic stays idle), then close."""
        log.info(
            "archive sink starting into %s: %s",
            self.handler.store.describe(),
            describe(self.settings),
        )
        await self.loop.run(stop)
        h = self.handler
        log.info(
            "archive sink stopped: %d spans in %d files (%d bytes), %d already "
            "archived spans skipped, %d records dead-lettered",
            h.archived_spans,
            h.files,
            h.bytes_written,
            h.skipped_spans,
            self.loop.dead_lettered,
        )
