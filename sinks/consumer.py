"""The consume, batch, write, dead-letter, commit loop shared by the sinks.

A ``BatchConsumer`` polls one topic with confluent-kafka and hands records to
a ``BatchHandler`` in batches, closed by size or age. Each batch takes three
steps, in order: the handler makes it durable (or says which records are
dead), the dead letters are confirmed by the DLQ topic, then the offsets the
handler releases are committed. A crash between steps replays the batch, so
delivery is at-least-once; idempotent handlers make storage exactly-once.
Every ``PROGRESS_EVERY_S`` the loop logs its counters, when they changed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from llmobs import topics
from llmobs.errors import StageError
from llmobs.kafka import consumer_config, producer_config
from llmobs.retry import ShutdownRequested

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 10.0
CONSUME_MAX_MESSAGES = 500
CONSUME_MAX_WAIT_S = 0.5
DLQ_FLUSH_TIMEOUT_S = 30.0
MAX_DETAIL_CHARS = 500
# Waiting for the first assignment is not idling, up to this long.
JOIN_GRACE_S = 30.0

Position = tuple[str, int]
# records, batches, dead-lettered, lag, the handler's own counters
Progress = tuple[int, int, int, int | None, str]


@dataclass
class Item:
    """One consumed record: its decoded payload, or why it goes to the DLQ."""

    message: Message
    payload: Any = None
    size: int = 0
    reason: str = ""
    detail: str = ""
    extra_headers: list[tuple[str, str]] = field(default_factory=list)

    @property
    def dead(self) -> bool:
        return bool(self.reason)

    def kill(self, reason: str, detail: str, **headers: str) -> None:
        """Send this record to the DLQ instead of the backend."""
        self.reason = reason
        self.detail = detail
        self.extra_headers = list(headers.items())

    @property
    def position(self) -> Position:
        return (self.message.topic() or "", self.message.partition() or 0)

    @property
    def offset(self) -> int:
        offset = self.message.offset()
        return -1 if offset is None else offset


class BatchHandler(Protocol):
    """What a sink plugs into the loop."""

    def decode(self, message: Message) -> Item:
        """The record as an Item; ``kill`` it when it cannot be read."""

    async def write(
        self, items: list[Item], stop: asyncio.Event
    ) -> list[TopicPartition] | None:
        """Make the live items durable; return the offsets now safe to commit.

        None means every item's next offset. Raising leaves the batch
        uncommitted, to be read again after a restart.
        """

    async def tick(self, stop: asyncio.Event) -> list[TopicPartition] | None:
        """Periodic work between batches; offsets to commit, or None."""

    async def close(self, stop: asyncio.Event) -> list[TopicPartition] | None:
        """Shutdown: make what is buffered durable; offsets to commit."""

    def revoke(self, positions: set[Position]) -> None:
        """Forget buffered state of partitions this worker no longer owns."""


@runtime_checkable
class ReportsProgress(Protocol):
    """Optional for a handler: its own counters, appended to the progress line."""

    def progress(self) -> str:
        """E.g. ``"120 spans written, 3 duplicates"``; never record contents."""


@dataclass(frozen=True)
class LoopSettings:
    """The knobs of the loop, copied from a sink's settings."""

    kafka_bootstrap: str
    topic: str
    group_id: str
    dlq_topic: str
    max_batch_size: int
    flush_interval_s: float
    max_idle_s: float | None
    # Take only as many records per poll as the batch has room for, judged by
    # the mean size of the records seen so far, so batches stay near the size.
    bounded_polls: bool = False


def next_offsets(items: Sequence[Item]) -> list[TopicPartition]:
    """The offset after the last record of each partition among ``items``."""
    ends: dict[Position, int] = {}
    for item in items:
        ends[item.position] = max(ends.get(item.position, 0), item.offset + 1)
    return [TopicPartition(t, p, o) for (t, p), o in sorted(ends.items())]


class BatchConsumer:
    """Runs one handler over one topic until stopped or idle."""

    def __init__(self, name: str, settings: LoopSettings, handler: BatchHandler):
        self.name = name
        self.settings = settings
        self.handler = handler
        self.consumed_records = 0
        self.batches = 0
        self.dead_lettered = 0
        self._items: list[Item] = []
        self._size = 0
        self._seen_size = 0
        self._started_s = 0.0
        self._dlq_errors: list[KafkaError] = []
        self._consumer: Any = None
        self._producer: Any = None
        self._active_s = 0.0
        self._assigned = False

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set (or ``max_idle_s`` passes), then close."""
        s = self.settings
        self._consumer = Consumer(consumer_config(s.kafka_bootstrap, s.group_id))
        self._producer = Producer(producer_config(s.kafka_bootstrap))
        self._consumer.subscribe(
            [s.topic], on_assign=self._on_assign, on_revoke=self._on_revoke
        )
        try:
            await self._loop(stop)

            # Finish what is in hand: write, confirm, commit, then close.
            await self._flush(stop)
            await self._commit(await self.handler.close(stop))
        except ShutdownRequested:
            log.warning(
                "%s: stopped while retrying; %d uncommitted records will be read again",
                self.name,
                len(self._items),
            )
        finally:
            await asyncio.to_thread(self._consumer.close)
            await asyncio.to_thread(self._producer.flush, DLQ_FLUSH_TIMEOUT_S)

    async def _loop(self, stop: asyncio.Event) -> None:
        s = self.settings
        self._active_s = last_progress_s = time.monotonic()
        last_progress = self._progress()
        while not stop.is_set():
            wait_s = CONSUME_MAX_WAIT_S
            if self._items:
                due_s = self._started_s + s.flush_interval_s - time.monotonic()
                wait_s = max(0.0, min(wait_s, due_s))
            messages = await asyncio.to_thread(
                self._consumer.consume, self._room(), wait_s
            )
            now_s = time.monotonic()
            if messages:
                self._active_s = now_s
                self._take(messages)

            if self._items and (
                self._size >= s.max_batch_size
                or now_s - self._started_s >= s.flush_interval_s
            ):
                await self._flush(stop)
            await self._commit(await self.handler.tick(stop))

            if now_s - last_progress_s >= PROGRESS_EVERY_S:
                last_progress_s = now_s
                last_progress = self._log_progress(last_progress)

            idle_s = now_s - self._active_s
            limit_s = s.max_idle_s
            if limit_s is not None and not self._assigned:
                limit_s += JOIN_GRACE_S
            if limit_s is not None and idle_s >= limit_s:
                log.info("%s: no new records for %.1fs; stopping", self.name, idle_s)
                return

    def _room(self) -> int:
        """How many records the next poll may take."""
        if not self.settings.bounded_polls:
            return CONSUME_MAX_MESSAGES
        size_per_record = max(1, self._seen_size // max(1, self.consumed_records))
        free_size = self.settings.max_batch_size - self._size
        return max(1, min(CONSUME_MAX_MESSAGES, free_size // size_per_record))

    def _progress(self) -> Progress:
        handler = self.handler
        extra = handler.progress() if isinstance(handler, ReportsProgress) else ""
        return (
            self.consumed_records,
            self.batches,
            self.dead_lettered,
            self._lag(),
            f", {extra}" if extra else "",
        )

    def _log_progress(self, last: Progress) -> Progress:
        """Log the counters unless they still read as on the last line."""
        progress = self._progress()
        if progress == last:
            return last
        log.info(
            "%s progress: %d records, %d batches, %d dead-lettered, lag %s%s",
            self.name,
            *progress,
        )
        return progress

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

    def low_watermark(self, position: Position) -> int | None:
        """The oldest offset Kafka still holds for ``position``, if known."""
        if self._consumer is None:
            return None
        try:
            low, _high = self._consumer.get_watermark_offsets(
                TopicPartition(*position), timeout=5
            )
        except KafkaException:
            return None
        return int(low) if low >= 0 else None

    def _take(self, messages: list[Message]) -> None:
        for message in messages:
            error = message.error()
            if error is not None:
                if error.fatal():
                    raise StageError(f"kafka consumer failed: {error}")
                log.warning("kafka consumer: %s", error)
                continue
            item = self.handler.decode(message)
            self.consumed_records += 1
            self._seen_size += item.size
            if not self._items:
                self._started_s = time.monotonic()
            self._items.append(item)
            self._size += item.size

    async def _flush(self, stop: asyncio.Event) -> None:
        items = self._items
        if not items:
            return

        # Step 1: the handler makes the live records durable.
        offsets = await self.handler.write(items, stop)

        # Step 2: dead letters are acknowledged by Kafka before the commit.
        await self._dead_letter([item for item in items if item.dead])

        # Step 3: only now may the group move past these records.
        await self._commit(next_offsets(items) if offsets is None else offsets)
        self.batches += 1
        self._items = []
        self._size = 0

    async def _dead_letter(self, dead: list[Item]) -> None:
        if not dead:
            return
        self._dlq_errors.clear()
        for item in dead:
            self._producer.produce(
                self.settings.dlq_topic,
                key=item.message.key(),
                value=item.message.value(),
                headers=dlq_headers(item),
                on_delivery=self._on_dlq_delivery,
            )
            log.warning(
                "dead-lettered %s[%d] %d: %s",
                item.position[0],
                item.position[1],
                item.offset,
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

    async def _commit(self, offsets: list[TopicPartition] | None) -> None:
        if not offsets:
            return
        try:
            result = await asyncio.to_thread(
                self._consumer.commit, offsets=offsets, asynchronous=False
            )
        except KafkaException as exc:
            # The data is durable; a replay after a lost commit is absorbed.
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
        log.info("%s: partitions assigned: %s", self.name, _names(partitions))

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Runs inside consume(). Unwritten records of these partitions are
        # dropped; the next owner reads them again from the committed offset.
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        kept = [item for item in self._items if item.position not in revoked]
        dropped = len(self._items) - len(kept)
        self._items = kept
        self._size = sum(item.size for item in kept)
        self.handler.revoke(revoked)
        log.info(
            "%s: partitions revoked: %s (%d unwritten records left to the next owner)",
            self.name,
            _names(partitions),
            dropped,
        )


def _names(partitions: list[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "none"


def dlq_headers(item: Item) -> list[tuple[str, str | bytes | None]]:
    """The record's own headers plus why and from where it was dead-lettered."""
    topic, partition = item.position
    raw = item.message.headers() or []
    headers = list(raw.items()) if isinstance(raw, dict) else list(raw)
    headers += [
        (topics.HEADER_DLQ_REASON, item.reason),
        (topics.HEADER_DLQ_DETAIL, item.detail[:MAX_DETAIL_CHARS]),
        (topics.HEADER_DLQ_TOPIC, topic),
        (topics.HEADER_DLQ_PARTITION, str(partition)),
        (topics.HEADER_DLQ_OFFSET, str(item.offset)),
    ]
    headers += item.extra_headers
    return headers
