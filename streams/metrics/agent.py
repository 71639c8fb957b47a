"""Binds the metric windows to a Faust app: a state table, an agent, a timer.

Faust's windowed tables are not used: they drop events later than their
expiry and close windows per key without a way to emit corrections, and their
per-key changelog cannot tie state to the input offsets applied, which exact
counts after a crash need. Instead each partition of ``input_topic`` keeps one
``PartitionWindows``, saved key by key in table ``metrics-windows`` (layout
and crash safety in ``streams.metrics.state``): confirmed by Kafka before the
batch is acknowledged and before its records are sent.

A batch is acknowledged only once its partition's state is durable: a save
is retried until Kafka confirms it, and a batch whose partition is revoked
first is left unacknowledged, so that the next owner reads it again.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import faust

import schemas
from llmobs import topics
from llmobs.errors import SchemaError
from llmobs.prometheus import Exposition
from llmobs.retry import Backoff, ShutdownRequested, retry_async
from streams.acks import withhold_acks
from streams.metrics.settings import MetricsSettings
from streams.metrics.state import SavedState, Write, partition_keys
from streams.metrics.window import CORRECTION, PartitionWindows

log = logging.getLogger(__name__)

STATE_TABLE = "metrics-windows"
METRIC_WINDOW = "metric_window"
RAW = ("raw", "raw")
# Set by ``llmobs replay --from-archive`` (as the archive sink names it): the
# spans were counted when they first went by.
HEADER_REPLAYED = "llmobs.replayed_from"
# As long as the partition stays ours: giving up would lose the counts.
SAVE_BACKOFF = Backoff(initial_s=0.5, max_s=15.0, deadline_s=math.inf)

# (partition, offset, value, replayed from the archive)
Record = tuple[int, int, bytes, bool]


class Aggregator:
    """The windows of the partitions this worker owns, and their delivery."""

    def __init__(
        self, settings: MetricsSettings, input_topic: str, table: Any, output: Any
    ) -> None:
        self.settings = settings
        self.input_topic = input_topic
        self.table = table
        self.output = output
        self.partitions: dict[int, SavedState] = {}
        # Set when a partition is revoked: its retries stop waiting.
        self._revoked: dict[int, asyncio.Event] = {}
        self.lock = asyncio.Lock()
        self.spans_counted = 0
        self.records_read = 0
        self.records_emitted = 0
        self.corrections_emitted = 0
        self.undecodable = 0
        self.batches_abandoned = 0
        self.replays_skipped = 0
        self.duplicate_spans = 0
        self._codec = schemas.codec(schemas.SPAN_BATCH)
        self._out_codec = schemas.codec(METRIC_WINDOW)

    def assign(self, partitions: Iterable[int]) -> None:
        """Restore the state of partitions this worker now owns."""
        for partition in partitions:
            if partition not in self.partitions:
                self._restore(partition)

    async def revoke(self, partitions: Iterable[int]) -> None:
        """Stop work on ``partitions`` and drop their state; the next owner
        restores it from the changelog."""
        partitions = set(partitions)
        for partition in partitions:
            self._revoked.setdefault(partition, asyncio.Event()).set()

        # Under the lock: a batch or tick may be saving these partitions.
        async with self.lock:
            for partition in partitions:
                self.partitions.pop(partition, None)
                self._revoked.pop(partition, None)
                # Written here, not by recovery, Faust would keep them: a key
                # the next owner deletes must not come back if this worker
                # owns the partition again after the tombstone is compacted.
                for key in partition_keys(self.table.data, partition):
                    self.table.data.pop(key, None)

    def _restore(self, partition: int) -> SavedState:
        source = f"{self.input_topic}[{partition}]"
        windows = PartitionWindows(
            source,
            self.settings.window_s,
            self.settings.grace_s,
            self.settings.dedup_horizon_s,
        )
        state = SavedState(partition, windows)
        state.restore(self.table.data)
        self.partitions[partition] = state
        self._revoked[partition] = asyncio.Event()
        return state

    async def on_records(self, records: Sequence[Record]) -> set[int]:
        """Count records (archive replays excepted), then close and deliver.

        Returns the partitions whose records are not durably counted (not
        ours, or revoked before their state was saved): their records must
        not be acknowledged.
        """
        async with self.lock:
            skipped: set[int] = set()
            for partition, offset, value, replayed in records:
                state = self.partitions.get(partition)
                if state is None:
                    skipped.add(partition)
                    continue
                self.records_read += 1
                if replayed:
                    self.replays_skipped += 1
                    continue
                try:
                    batch = self._codec.decode(value)
                except SchemaError as exc:
                    # The PostgreSQL sink dead-letters it; here it counts nothing.
                    self.undecodable += 1
                    log.warning(
                        "%s[%d] %d: %s", self.input_topic, partition, offset, exc
                    )
                    continue
                windows = state.windows
                duplicates = windows.duplicate_spans
                self.spans_counted += windows.apply(offset, batch)
                self.duplicate_spans += windows.duplicate_spans - duplicates
                if windows.needs_save():
                    # One revoked meanwhile is abandoned, as at the end.
                    skipped |= await self._close_and_deliver()
            abandoned = skipped | await self._close_and_deliver()
        if abandoned:
            self.batches_abandoned += 1
            log.warning(
                "%s partitions %s revoked before their state was saved; "
                "their records are left for the next owner",
                self.input_topic,
                sorted(abandoned),
            )
        return abandoned

    async def tick(self) -> None:
        async with self.lock:
            await self._close_and_deliver()

    async def _close_and_deliver(self) -> set[int]:
        """Save, send and forget each partition's outbox; the ones given up."""
        abandoned = set()
        # A copy: a partition may be revoked while this awaits.
        for partition, state in list(self.partitions.items()):
            revoked = self._revoked.get(partition)
            if self.partitions.get(partition) is not state or (
                revoked is not None and revoked.is_set()
            ):
                abandoned.add(partition)
                continue
            try:
                await self._close_one(partition, state)
            except ShutdownRequested:
                abandoned.add(partition)
        return abandoned

    async def _close_one(self, partition: int, state: SavedState) -> None:
        windows = state.windows
        windows.close()

        # Step 1: state with its outbox is durable before anything is sent.
        await self._write(partition, state.changes())
        await self._write(partition, state.commit())
        state.committed()

        # Step 2: the records, re-sent unchanged after a crash; the sink
        # adds each identity once.
        if windows.outbox:
            records = list(windows.outbox)
            await self._send(partition, records)
            state.sent(records)
            self.records_emitted += len(records)
            self.corrections_emitted += sum(
                1 for r in records if r["kind"] == CORRECTION
            )

        # Step 3: forget what was delivered.
        await self._write(partition, state.cleanup())
        state.cleaned()

    async def _write(self, partition: int, writes: list[Write]) -> None:
        if not writes:
            return

        async def send() -> None:
            await asyncio.gather(
                *(
                    self.table.send_changelog(partition, w.key, w.value, *RAW)
                    for w in writes
                )
            )

        await self._retry_call(partition, "saving metric windows", send)
        # Only confirmed values may be read back as this partition's state.
        for w in writes:
            if w.value is None:
                self.table.data.pop(w.key, None)
            else:
                self.table.data[w.key] = w.value

    async def _send(self, partition: int, records: list[dict[str, Any]]) -> None:
        async def send() -> None:
            futures = [
                await self.output.send(
                    key=record["tenant"].encode(),
                    value=self._out_codec.encode(record),
                )
                for record in records
            ]
            await asyncio.gather(*futures)

        await self._retry_call(partition, "delivering metric windows", send)

    async def _retry_call(
        self, partition: int, what: str, call: Callable[[], Awaitable[None]]
    ) -> None:
        revoked = self._revoked.setdefault(partition, asyncio.Event())
        await retry_async(
            f"{what} of {self.input_topic}[{partition}]",
            call,
            (Exception,),
            SAVE_BACKOFF,
            revoked,
        )

    def prometheus(self) -> str:
        out = Exposition()
        for name, help_text, value in (
            ("spans_counted", "Spans counted into windows.", self.spans_counted),
            ("windows_emitted", "Window records emitted.", self.records_emitted),
            (
                "corrections_emitted",
                "Correction records, for spans later than their window's grace.",
                self.corrections_emitted,
            ),
            (
                "archive_replays_skipped",
                "Spans replayed from the archive, not counted again.",
                self.replays_skipped,
            ),
            (
                "duplicate_spans",
                "Copies of spans already counted, skipped.",
                self.duplicate_spans,
            ),
            (
                "batches_abandoned",
                "Input batches left to the next owner: revoked before saved.",
                self.batches_abandoned,
            ),
        ):
            out.single(f"llmobs_metrics_{name}_total", "counter", help_text, value)
        states = self.partitions.values()
        out.single(
            "llmobs_metrics_open_windows",
            "gauge",
            "Windows still open.",
            sum(len(state.windows.open) for state in states),
        )
        out.single(
            "llmobs_metrics_span_identities",
            "gauge",
            "Span identities held to recognise copies.",
            sum(len(state.windows.seen) for state in states),
        )
        return out.text()


async def process(aggregator: Aggregator, events: Sequence[Any]) -> None:
    """Count one batch of events; withhold the acks of what is not durable."""
    records = [
        (
            e.message.partition,
            e.message.offset,
            e.value,
            HEADER_REPLAYED in (e.headers or {}),
        )
        for e in events
    ]
    try:
        abandoned = await aggregator.on_records(records)
    except BaseException:
        # Unknown how far the state got: nothing of this batch may commit.
        withhold_acks(events)
        raise
    withhold_acks(e for e in events if e.message.partition in abandoned)


def register(
    app: faust.App, settings: MetricsSettings, input_topic: str = topics.SPANS
) -> Aggregator | None:
    """Declare the metrics table, agent and timer on ``app``.

    The table gets ``app.conf.topic_partitions`` partitions, which must equal
    the partitions of ``input_topic``. Returns None when metrics are disabled.
    """
    if not settings.metrics_enabled:
        log.info("windowed metrics disabled")
        return None
    source = app.topic(input_topic, key_type=bytes, value_type=bytes)
    output = app.topic(settings.metrics_topic, key_type=bytes, value_type=bytes)
    table = app.Table(
        STATE_TABLE,
        help="metric windows per input partition",
        key_type=bytes,
        value_type=bytes,
        partitions=app.conf.topic_partitions,
        store="memory://",
    )
    aggregator = Aggregator(settings, input_topic, table, output)
    ready = {"recovered": False}

    @app.agent(source, name="metrics")
    async def aggregate(stream: Any) -> None:
        async for events in stream.take_events(
            settings.metrics_batch_records, within=settings.metrics_batch_wait_s
        ):
            # Acknowledged when this body returns: state and records are in
            # Kafka by then, so a committed offset is never ahead of them.
            try:
                await process(aggregator, events)
            except Exception as exc:
                # Its acks withheld, the partition cannot move on in this
                # process; a restarted worker reads the batch again.
                await app.crash(exc)
                raise

    @app.timer(settings.close_tick_s, name="metrics-close")
    async def close_due() -> None:
        if ready["recovered"]:
            await aggregator.tick()

    @table.on_recover
    async def recovered() -> None:
        aggregator.assign(
            tp.partition
            for tp in app.assignor.assigned_actives()
            if tp.topic == input_topic
        )
        ready["recovered"] = True

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def revoked(sender: Any, partitions: Any, **kwargs: Any) -> None:
        ready["recovered"] = False
        await aggregator.revoke(
            tp.partition for tp in partitions if tp.topic == input_topic
        )

    log.info(
        "windowed metrics: %ss windows, %ss grace, copies skipped for %ss, to %s",
        settings.window_s,
        settings.grace_s,
        settings.dedup_horizon_s,
        settings.metrics_topic,
    )
    return aggregator
