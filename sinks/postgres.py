"""The PostgreSQL sink worker: llm.spans SpanBatch records into llm_spans.

Records are consumed in batches. Each batch takes three steps, in order:
write its rows in one transaction, confirm its dead letters on the DLQ, then
commit its offsets. A crash between steps replays the batch, which the
idempotent insert absorbs, so delivery is at-least-once and storage
effectively exactly-once. A record that cannot be decoded goes to the DLQ and
never stops its partition.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

import schemas
from llmobs import topics
from llmobs.errors import SchemaError, StageError
from llmobs.kafka import consumer_config, producer_config
from llmobs.retry import Backoff, ShutdownRequested, retry_async
from llmobs.settings import describe
from sinks.rows import Row, batch_rows
from sinks.settings import SinkSettings
from sinks.writer import TRANSIENT_ERRORS, SpanWriter

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 10.0
CONSUME_MAX_MESSAGES = 500
CONSUME_MAX_WAIT_S = 0.5
DLQ_FLUSH_TIMEOUT_S = 30.0
MAX_DETAIL_CHARS = 500
# Waiting for the first assignment is not idling, up to this long.
JOIN_GRACE_S = 30.0


@dataclass
class Item:
    """One consumed record: its rows, or why it goes to the DLQ."""

    message: Message
    rows: list[Row] | None
    reason: str = ""
    detail: str = ""


@dataclass
class Batch:
    """Records consumed but not yet written, and the offsets they release."""

    items: list[Item] = field(default_factory=list)
    spans: int = 0
    started_s: float = 0.0

    def add(self, item: Item) -> None:
        if not self.items:
            self.started_s = time.monotonic()
        self.items.append(item)
        self.spans += len(item.rows or ())

    def drop_partitions(self, revoked: set[tuple[str, int]]) -> int:
        """Forget the records of revoked partitions; returns how many."""
        kept = [i for i in self.items if _position(i.message) not in revoked]
        dropped = len(self.items) - len(kept)
        self.items = kept
        self.spans = sum(len(i.rows or ()) for i in kept)
        return dropped

    def next_offsets(self) -> list[TopicPartition]:
        """The offset after the last record of each partition in the batch."""
        ends: dict[tuple[str, int], int] = {}
        for item in self.items:
            key = _position(item.message)
            ends[key] = max(ends.get(key, 0), _offset(item.message) + 1)
        return [TopicPartition(t, p, o) for (t, p), o in sorted(ends.items())]


class PostgresSpanSink:
    """Consumes SpanBatch records and stores their spans in llm_spans."""

    def __init__(self, settings: SinkSettings) -> None:
        self.settings = settings
        self.written_spans = 0
        self.duplicate_spans = 0
        self.batches = 0
        self.consumed_records = 0
        self.dead_lettered = 0
        self._codec = schemas.codec(schemas.SPAN_BATCH)
        self._writer = SpanWriter(
            settings.database_url,
            settings.db_connect_timeout_s,
            settings.migrate_on_start,
        )
        self._backoff = Backoff(deadline_s=settings.db_retry_deadline_s)
        self._batch = Batch()
        self._dlq_errors: list[KafkaError] = []
        self._consumer: Any = None
        self._producer: Any = None
        self._active_s = 0.0
        self._assigned = False
        self._seen_spans = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set (or ``max_idle_s`` passes), then close."""
        s = self.settings
        log.info("postgres sink starting: %s", describe(s))
        self._consumer = Consumer(consumer_config(s.kafka_bootstrap, s.group_id))
        self._producer = Producer(producer_config(s.kafka_bootstrap))
        self._consumer.subscribe(
            [s.spans_topic], on_assign=self._on_assign, on_revoke=self._on_revoke
        )
        try:
            await self._consume_loop(stop)

            # Finish the batch in hand: write, confirm, commit, then close.
            await self._flush(stop)
        except ShutdownRequested:
            log.warning(
                "stopped while retrying a write; %d uncommitted records "
                "will be read again",
                len(self._batch.items),
            )
        finally:
            await self._writer.close()
            await asyncio.to_thread(self._consumer.close)
            await asyncio.to_thread(self._producer.flush, DLQ_FLUSH_TIMEOUT_S)
        log.info(
            "postgres sink stopped: %d spans written, %d duplicates skipped, "
            "%d batches, %d records dead-lettered",
            self.written_spans,
            self.duplicate_spans,
            self.batches,
            self.dead_lettered,
        )

    async def _consume_loop(self, stop: asyncio.Event) -> None:
        s = self.settings
        self._active_s = last_progress_s = time.monotonic()
        while not stop.is_set():
            wait_s = CONSUME_MAX_WAIT_S
            if self._batch.items:
                due_s = self._batch.started_s + s.flush_interval_s - time.monotonic()
                wait_s = max(0.0, min(wait_s, due_s))
            messages = await asyncio.to_thread(
                self._consumer.consume, self._room(), wait_s
            )
            now_s = time.monotonic()
            if messages:
                self._active_s = now_s
                self._take(messages)

            batch = self._batch
            if batch.items and (
                batch.spans >= s.max_batch_spans
                or now_s - batch.started_s >= s.flush_interval_s
            ):
                await self._flush(stop)

            if now_s - last_progress_s >= PROGRESS_EVERY_S:
                last_progress_s = now_s
                self._log_progress()

            idle_s = now_s - self._active_s
            limit_s = s.max_idle_s
            if limit_s is not None and not self._assigned:
                limit_s += JOIN_GRACE_S
            if limit_s is not None and idle_s >= limit_s:
                log.info("no new records for %.1fs; stopping", idle_s)
                return

    def _room(self) -> int:
        """How many records to take so the batch stays near max_batch_spans."""
        spans_per_record = max(1, self._seen_spans // max(1, self.consumed_records))
        free_spans = self.settings.max_batch_spans - self._batch.spans
        return max(1, min(CONSUME_MAX_MESSAGES, free_spans // spans_per_record))

    def _take(self, messages: list[Message]) -> None:
        for message in messages:
            error = message.error()
            if error is not None:
                if error.fatal():
                    raise StageError(f"kafka consumer failed: {error}")
                log.warning("kafka consumer: %s", error)
                continue
            item = self._decode(message)
            self.consumed_records += 1
            self._seen_spans += len(item.rows or ())
            self._batch.add(item)

    def _decode(self, message: Message) -> Item:
        try:
            record = self._codec.decode(message.value() or b"")
        except SchemaError as exc:
            return Item(message, None, "schema_error", str(exc))
        try:
            return Item(message, batch_rows(record))
        except (IndexError, KeyError, TypeError, ValueError, OverflowError) as exc:
            return Item(message, None, "invalid_record", f"{type(exc).__name__}: {exc}")

    async def _flush(self, stop: asyncio.Event) -> None:
        batch = self._batch
        if not batch.items:
            return

        # Step 1: the rows are durable in PostgreSQL before anything else.
        await self._write(batch, stop)

        # Step 2: dead letters are acknowledged by Kafka before the commit.
        await self._dead_letter(batch)

        # Step 3: only now may the group move past these records.
        await self._commit(batch.next_offsets())
        self.batches += 1
        self._batch = Batch()

    async def _write(self, batch: Batch, stop: asyncio.Event) -> None:
        rows = [row for item in batch.items for row in item.rows or ()]
        if not rows:
            return
        try:
            inserted = await self._write_rows(rows, stop)
        except asyncpg.DataError as exc:
            log.warning(
                "batch of %d spans rejected (%s); writing record by record",
                len(rows),
                type(exc).__name__,
            )
            inserted = await self._write_each(batch, stop)
        self.written_spans += inserted
        self.duplicate_spans += len(rows) - inserted
        log.debug("wrote %d new spans of %d", inserted, len(rows))

    async def _write_each(self, batch: Batch, stop: asyncio.Event) -> int:
        # Isolates records the database rejects (bad JSON, NUL characters)
        # so one of them cannot stop the partition.
        inserted = 0
        for item in batch.items:
            if not item.rows:
                continue
            try:
                inserted += await self._write_rows(item.rows, stop)
            except asyncpg.DataError as exc:
                item.rows = None
                item.reason = "rejected_by_database"
                item.detail = f"{exc.sqlstate} {type(exc).__name__}: {exc}"
        return inserted

    async def _write_rows(self, rows: list[Row], stop: asyncio.Event) -> int:
        try:
            return await retry_async(
                f"writing {len(rows)} spans to PostgreSQL",
                lambda: self._writer.write(rows),
                retriable=TRANSIENT_ERRORS,
                backoff=self._backoff,
                shutdown=stop,
            )
        except (asyncpg.DataError, ShutdownRequested):
            raise
        except TRANSIENT_ERRORS as exc:
            raise StageError(
                f"PostgreSQL unavailable for {self._backoff.deadline_s:.0f}s: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        except asyncpg.PostgresError as exc:
            raise StageError(
                f"PostgreSQL rejected a batch write: {exc.sqlstate} "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    async def _dead_letter(self, batch: Batch) -> None:
        dead = [item for item in batch.items if item.rows is None]
        if not dead:
            return
        self._dlq_errors.clear()
        for item in dead:
            self._producer.produce(
                self.settings.dlq_topic,
                key=item.message.key(),
                value=item.message.value(),
                headers=_dlq_headers(item),
                on_delivery=self._on_dlq_delivery,
            )
            log.warning(
                "dead-lettered %s[%d] %d: %s",
                item.message.topic(),
                item.message.partition(),
                item.message.offset(),
                item.reason,
            )
        remaining = await asyncio.to_thread(self._producer.flush, DLQ_FLUSH_TIMEOUT_S)
        if remaining or self._dlq_errors:
            raise StageError(
                f"dead letters not confirmed by {self.settings.dlq_topic}: "
                f"{remaining} pending, errors {self._dlq_errors[:3]}"
            )
        self.dead_lettered += len(dead)

    def _on_dlq_delivery(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            self._dlq_errors.append(error)

    async def _commit(self, offsets: list[TopicPartition]) -> None:
        try:
            result = await asyncio.to_thread(
                self._consumer.commit, offsets=offsets, asynchronous=False
            )
        except KafkaException as exc:
            # The rows are stored; a replay after a lost commit inserts nothing.
            log.warning("offset commit failed (%s); records will be replayed", exc)
            return
        for tp in result or ():
            if tp.error is not None:
                log.warning(
                    "offset commit failed for %s[%d]: %s",
                    tp.topic,
                    tp.partition,
                    tp.error,
                )

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Idle time counts from the assignment: joining the group is not idling.
        self._active_s = time.monotonic()
        self._assigned = True
        log.info("partitions assigned: %s", _names(partitions))

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Runs inside consume(). Written batches are already committed, so
        # only unwritten records remain; the next owner reads them again.
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        dropped = self._batch.drop_partitions(revoked)
        log.info(
            "partitions revoked: %s (%d unwritten records left to the next owner)",
            _names(partitions),
            dropped,
        )

    def _log_progress(self) -> None:
        log.info(
            "progress: %d spans written, %d duplicates, %d batches, "
            "%d dead-lettered, lag %s",
            self.written_spans,
            self.duplicate_spans,
            self.batches,
            self.dead_lettered,
            self._lag(),
        )

    def _lag(self) -> int | None:
        """Records behind the high watermark, from cached broker data."""
        try:
            positions = self._consumer.position(self._consumer.assignment())
            lag = 0
            for tp in positions:
                _low, high = self._consumer.get_watermark_offsets(tp, cached=True)
                if tp.offset >= 0 and high >= 0:
                    lag += max(0, high - tp.offset)
        except KafkaException:
            return None
        return lag


def _names(partitions: list[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "none"


def _position(message: Message) -> tuple[str, int]:
    return (message.topic() or "", message.partition() or 0)


def _offset(message: Message) -> int:
    offset = message.offset()
    return -1 if offset is None else offset


def _dlq_headers(item: Item) -> list[tuple[str, str | bytes | None]]:
    topic, partition = _position(item.message)
    raw = item.message.headers() or []
    headers = list(raw.items()) if isinstance(raw, dict) else list(raw)
    headers += [
        (topics.HEADER_DLQ_REASON, item.reason),
        (topics.HEADER_DLQ_DETAIL, item.detail[:MAX_DETAIL_CHARS]),
        (topics.HEADER_DLQ_TOPIC, topic),
        (topics.HEADER_DLQ_PARTITION, str(partition)),
        (topics.HEADER_DLQ_OFFSET, str(_offset(item.message))),
    ]
    return headers
