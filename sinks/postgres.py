"""The PostgreSQL sink worker: llm.spans SpanBatch records into llm_spans.

``BatchConsumer`` runs the consume, dead-letter, commit loop; this handler
writes each batch's rows in one transaction before the loop confirms its dead
letters and commits its offsets. A crash between steps replays the batch,
which the idempotent insert absorbs, so delivery is at-least-once and storage
effectively exactly-once. A record that cannot be decoded, or that the
database rejects, goes to the DLQ and never stops its partition.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from confluent_kafka import Message, TopicPartition

import schemas
from llmobs.errors import SchemaError, StageError
from llmobs.retry import Backoff, ShutdownRequested, retry_async
from llmobs.settings import describe
from sinks.consumer import BackendUnavailable, BatchConsumer, Item, LoopSettings
from sinks.handlers import WriteThrough
from sinks.rows import Row, batch_rows, without_nul
from sinks.settings import SinkSettings
from sinks.writer import REJECTED_DATA, TRANSIENT_ERRORS, SpanWriter

log = logging.getLogger(__name__)


class PostgresHandler(WriteThrough):
    """Decodes SpanBatch records into rows and writes each batch at once."""

    def __init__(self, settings: SinkSettings) -> None:
        self.written_spans = 0
        self.duplicate_spans = 0
        self.writer = SpanWriter(
            settings.database_url,
            settings.db_connect_timeout_s,
            settings.migrate_on_start,
        )
        self._codec = schemas.codec(schemas.SPAN_BATCH)
        self._backoff = Backoff(deadline_s=settings.db_retry_deadline_s)

    def counters(self) -> list[tuple[str, str, float]]:
        return [
            ("spans_written", "Spans inserted into llm_spans.", self.written_spans),
            (
                "duplicate_spans",
                "Spans skipped because llm_spans already held them.",
                self.duplicate_spans,
            ),
        ]

    def decode(self, message: Message) -> Item:
        item = Item(message)
        try:
            record = self._codec.decode(message.value() or b"")
        except SchemaError as exc:
            item.kill("schema_error", str(exc))
            return item
        try:
            rows = batch_rows(record)
        except (IndexError, KeyError, TypeError, ValueError, OverflowError) as exc:
            item.kill("invalid_record", f"{type(exc).__name__}: {exc}")
            return item
        item.payload = rows
        item.size = len(rows)
        return item

    async def write(
        self, items: list[Item], stop: asyncio.Event
    ) -> list[TopicPartition] | None:
        rows = [row for item in items if not item.dead for row in item.payload]
        if not rows:
            return None
        try:
            inserted = await self._write_rows(rows, stop)
        except REJECTED_DATA as exc:
            log.warning(
                "batch of %d spans rejected (%s); writing record by record",
                len(rows),
                type(exc).__name__,
            )
            inserted = await self._write_each(items, stop)
        self.written_spans += inserted
        self.duplicate_spans += len(rows) - inserted
        log.debug("wrote %d new spans of %d", inserted, len(rows))
        return None

    async def _write_each(self, items: list[Item], stop: asyncio.Event) -> int:
        # Isolates records the database rejects so one of them cannot stop the
        # partition; within such a record, every span it can hold is written.
        inserted = 0
        for item in items:
            if item.dead or not item.payload:
                continue
            try:
                inserted += await self._write_rows(item.payload, stop)
            except REJECTED_DATA:
                inserted += await self._write_spans_of(item, stop)
        return inserted

    async def _write_spans_of(self, item: Item, stop: asyncio.Event) -> int:
        """Write a rejected record's rows one at a time; set the record aside
        (whole, replayable: the insert is idempotent) if any still fails."""
        inserted, refused = 0, []
        for row in item.payload:
            try:
                inserted += await self._write_rows([row], stop)
                continue
            except REJECTED_DATA as exc:
                error = exc
            cleaned = without_nul(row)
            if cleaned is not row:
                try:
                    inserted += await self._write_rows([cleaned], stop)
                    log.warning("span %s: NUL characters replaced to store it", row[2])
                    continue
                except REJECTED_DATA as exc:
                    error = exc
            refused.append(f"span {row[2]}: {error.sqlstate} {type(error).__name__}")
        if refused:
            item.kill(
                "rejected_by_database",
                f"{len(refused)} of {len(item.payload)} spans refused; "
                + "; ".join(refused[:3]),
            )
        return inserted

    async def _write_rows(self, rows: list[Row], stop: asyncio.Event) -> int:
        try:
            return await retry_async(
                f"writing {len(rows)} spans to PostgreSQL",
                lambda: self.writer.write(rows),
                retriable=TRANSIENT_ERRORS,
                backoff=self._backoff,
                shutdown=stop,
            )
        except REJECTED_DATA:
            raise
        except ShutdownRequested:
            raise
        except TRANSIENT_ERRORS as exc:
            # The loop holds the batch and hands it back; the insert is
            # idempotent, so rows already written are skipped then.
            raise BackendUnavailable(
                f"PostgreSQL unavailable for {self._backoff.deadline_s:.0f}s: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        except asyncpg.PostgresError as exc:
            raise StageError(
                f"PostgreSQL rejected a batch write: {exc.sqlstate} "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def progress(self) -> str:
        return f"{self.written_spans} spans written, {self.duplicate_spans} duplicates"


class PostgresSpanSink:
    """Consumes SpanBatch records and stores their spans in llm_spans."""

    def __init__(self, settings: SinkSettings) -> None:
        self.settings = settings
        self.handler = PostgresHandler(settings)
        self.loop = BatchConsumer(
            "postgres sink",
            LoopSettings(
                kafka_bootstrap=settings.kafka_bootstrap,
                topic=settings.spans_topic,
                group_id=settings.group_id,
                dlq_topic=settings.dlq_topic,
                max_batch_size=settings.max_batch_spans,
                flush_interval_s=settings.flush_interval_s,
                max_idle_s=settings.max_idle_s,
                bounded_polls=True,
                metrics_address=settings.metrics_address,
            ),
            self.handler,
        )

    @property
    def written_spans(self) -> int:
        return self.handler.written_spans

    @property
    def duplicate_spans(self) -> int:
        return self.handler.duplicate_spans

    @property
    def batches(self) -> int:
        return self.loop.batches

    @property
    def consumed_records(self) -> int:
        return self.loop.consumed_records

    @property
    def dead_lettered(self) -> int:
        return self.loop.dead_lettered

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set (or ``max_idle_s`` passes), then close."""
        log.info("postgres sink starting: %s", describe(self.settings))
        try:
            await self.loop.run(stop)
        finally:
            await self.handler.writer.close()
        log.info(
            "postgres sink stopped: %d spans written, %d duplicates skipped, "
            "%d batches, %d records dead-lettered",
            self.written_spans,
            self.duplicate_spans,
            self.batches,
            self.dead_lettered,
        )
