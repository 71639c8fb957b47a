"""Binds the metric windows to a Faust app: a state table, an agent, a timer.

Faust's windowed tables are not used: they drop events later than their
expiry and close windows per key without a way to emit corrections, and their
per-key changelog cannot tie state to the input offsets applied, which exact
counts after a crash need. Instead each partition of ``input_topic`` keeps one
``PartitionWindows`` whose snapshot is the single value of table
``metrics-windows`` under the partition number, written (and confirmed by
Kafka) before the batch is acknowledged and before its records are sent.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust

import schemas
from llmobs import topics
from llmobs.errors import SchemaError
from streams.metrics.settings import MetricsSettings
from streams.metrics.window import PartitionWindows

log = logging.getLogger(__name__)

STATE_TABLE = "metrics-windows"
METRIC_WINDOW = "metric_window"
RAW = ("raw", "raw")


class Aggregator:
    """The windows of the partitions this worker owns, and their delivery."""

    def __init__(
        self, settings: MetricsSettings, input_topic: str, table: Any, output: Any
    ) -> None:
        self.settings = settings
        self.input_topic = input_topic
        self.table = table
        self.output = output
        self.partitions: dict[int, PartitionWindows] = {}
        self.lock = asyncio.Lock()
        self.spans_counted = 0
        self.records_read = 0
        self.records_emitted = 0
        self.corrections_emitted = 0
        self.undecodable = 0
        self._codec = schemas.codec(schemas.SPAN_BATCH)
        self._out_codec = schemas.codec(METRIC_WINDOW)

    def windows(self, partition: int) -> PartitionWindows:
        """The partition's state, restored from the table on first use."""
        state = self.partitions.get(partition)
        if state is None:
            source = f"{self.input_topic}[{partition}]"
            state = PartitionWindows(
                source, self.settings.window_s, self.settings.grace_s
            )
            saved = self.table.data.get(str(partition).encode())
            if saved:
                state.restore(saved)
            self.partitions[partition] = state
        return state

    async def on_records(self, records: list[tuple[int, int, bytes]]) -> None:
        """Count (partition, offset, value) records, then close and deliver."""
        async with self.lock:
            touched = set()
            for partition, offset, value in records:
                self.records_read += 1
                try:
                    batch = self._codec.decode(value)
                except SchemaError as exc:
                    # The PostgreSQL sink dead-letters it; here it counts nothing.
                    self.undecodable += 1
                    log.warning(
                        "%s[%d] %d: %s", self.input_topic, partition, offset, exc
                    )
                    continue
                self.spans_counted += self.windows(partition).apply(offset, batch)
                touched.add(partition)
            await self._close_and_deliver(touched)

    async def tick(self) -> None:
        async with self.lock:
            await self._close_and_deliver(set())

    def forget(self) -> None:
        """Drop all state; the next owner of each partition restores it."""
        self.partitions.clear()

    async def _close_and_deliver(self, touched: set[int]) -> None:
        for partition, state in self.partitions.items():
            if state.close() == 0 and partition not in touched and not state.outbox:
                continue

            # Step 1: state with its outbox is durable before anything is sent.
            await self._save(partition, state)
            if not state.outbox:
                continue

            # Step 2: the records, re-sent unchanged after a crash; the sink
            # adds each identity once.
            await self._deliver(state.outbox)
            self.records_emitted += len(state.outbox)
            self.corrections_emitted += sum(
                1 for r in state.outbox if r["kind"] == "correction"
            )
            state.outbox = []

            # Step 3: forget the outbox.
            await self._save(partition, state)

    async def _save(self, partition: int, state: PartitionWindows) -> None:
        key = str(partition).encode()
        value = state.snapshot()
        future = self.table.send_changelog(partition, key, value, *RAW)
        self.table.data[key] = value
        await future

    async def _deliver(self, records: list[dict[str, Any]]) -> None:
        futures = [
            await self.output.send(
                key=record["tenant"].encode(), value=self._out_codec.encode(record)
            )
            for record in records
        ]
        await asyncio.gather(*futures)

    def prometheus(self) -> str:
        return (
            "# TYPE llmobs_metrics_spans_counted_total counter\n"
            f"llmobs_metrics_spans_counted_total {self.spans_counted}\n"
            "# TYPE llmobs_metrics_windows_emitted_total counter\n"
            f"llmobs_metrics_windows_emitted_total {self.records_emitted}\n"
            "# TYPE llmobs_metrics_corrections_emitted_total counter\n"
            f"llmobs_metrics_corrections_emitted_total {self.corrections_emitted}\n"
            "# TYPE llmobs_metrics_open_windows gauge\n"
            "llmobs_metrics_open_windows "
            f"{sum(len(s.open) for s in self.partitions.values())}\n"
        )


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
            records = [(e.message.partition, e.message.offset, e.value) for e in events]
            await aggregator.on_records(records)

    @app.timer(settings.close_tick_s, name="metrics-close")
    async def close_due() -> None:
        if ready["recovered"]:
            await aggregator.tick()

    @table.on_recover
    async def recovered() -> None:
        for tp in app.assignor.assigned_actives():
            if tp.topic == input_topic:
                aggregator.windows(tp.partition)
        ready["recovered"] = True

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def revoked(sender: Any, *args: Any, **kwargs: Any) -> None:
        ready["recovered"] = False
        aggregator.forget()

    log.info(
        "windowed metrics: %ss windows, %ss grace, to %s",
        settings.window_s,
        settings.grace_s,
        settings.metrics_topic,
    )
    return aggregator
