"""The consume, batch, write, dead-letter, commit loop shared by the sinks.

A ``BatchConsumer`` polls one topic with confluent-kafka and hands records to
a ``BatchHandler`` in batches, closed by size or age. Each batch takes three
steps, in order: the handler makes it durable (or says which records are
dead), the dead letters are confirmed by the DLQ topic, then the offsets the
handler releases are committed. A crash between steps replays the batch, so
delivery is at-least-once; idempotent handlers make storage exactly-once.
A handler whose backend stays away past its own retry deadline raises
``BackendUnavailable``: the loop then holds the batch, uncommitted, with its
partitions paused but its group membership kept, and hands the same batch to
the handler again after a back-off, until it is written or shutdown comes.
Every ``PROGRESS_EVERY_S`` the loop logs its counters, when they changed;
with a ``metrics_address`` it also serves them (``sinks.status``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from llmobs.errors import StageError
from llmobs.kafka import consumer_config
from llmobs.retry import Backoff, ShutdownRequested, retry_async
from sinks import status
from sinks.batch import (
    BackendUnavailable,
    BatchHandler,
    DeadLetters,
    Item,
    Position,
    ReportsProgress,
    dlq_headers,
    next_offsets,
)

# The handler's side of the loop is defined in sinks.batch; sinks import it
# from here too.
__all__ = [
    "BackendUnavailable",
    "BatchConsumer",
    "BatchHandler",
    "Item",
    "LoopSettings",
    "Position",
    "ReportsProgress",
    "dlq_headers",
    "next_offsets",
]

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 10.0
CONSUME_MAX_MESSAGES = 500
CONSUME_MAX_WAIT_S = 0.5
# Waiting for the first assignment is not idling, up to this long.
JOIN_GRACE_S = 30.0
# librdkafka's own default; a sink whose write may take longer sets its own.
DEFAULT_MAX_POLL_INTERVAL_S = 300.0
# Between two writes of a held batch; never past max_s, so the poll that keeps
# the membership comes well within any max.poll.interval.
HOLD_BACKOFF = Backoff(initial_s=1.0, max_s=30.0, deadline_s=math.inf)

# records, batches, dead-lettered, lag, the handler's own counters
Progress = tuple[int, int, int, int | None, str]


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
    # The group evicts a member that does not poll for this long.
    max_poll_interval_s: float = DEFAULT_MAX_POLL_INTERVAL_S
    # host:port of the loop's /metrics and /healthz (None: not served).
    metrics_address: str | None = None


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
        self._consumer: Any = None
        self._dlq: DeadLetters | None = None
        self._active_s = 0.0
        self._assigned = False
        # Replaced, never changed in place: the /metrics endpoint reads it
        # while a rebalance runs inside consume's thread.
        self._assignment: frozenset[Position] = frozenset()
        self._polled_s = 0.0
        # Read by the /metrics endpoint.
        self.holding = False
        self.last_batch_unix_s = 0.0
        self.writing_since_s: float | None = None

    @property
    def assignment(self) -> frozenset[Position]:
        return self._assignment

    def since_poll_s(self) -> float:
        """Seconds since the last poll began; zero before the first."""
        return time.monotonic() - self._polled_s if self._polled_s else 0.0

    def write_s(self) -> float:
        """How long the batch in the handler's hands has taken; zero if none."""
        since = self.writing_since_s
        return time.monotonic() - since if since is not None else 0.0

    def uncommitted_lag(self, timeout_s: float = 2.0) -> int | None:
        """Records of the assigned partitions beyond the committed offsets,
        from the broker: what a restart would read again or for the first
        time. Blocking; None when the broker does not answer in time."""
        if self._consumer is None:
            return None
        wanted = [TopicPartition(t, p) for t, p in sorted(self._assignment)]
        try:
            committed = self._consumer.committed(wanted, timeout=timeout_s)
            lag = 0
            for tp in committed:
                low, high = self._consumer.get_watermark_offsets(
                    tp, timeout=timeout_s, cached=False
                )
                start = tp.offset if tp.offset >= 0 else low
                lag += max(0, high - start)
        except KafkaException:
            return None
        return lag

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set (or ``max_idle_s`` passes), then close."""
        s = self.settings
        max_poll_ms = int(s.max_poll_interval_s * 1000)
        self._consumer = Consumer(
            consumer_config(
                s.kafka_bootstrap, s.group_id, **{"max.poll.interval.ms": max_poll_ms}
            )
        )
        self._dlq = DeadLetters(s.kafka_bootstrap, s.dlq_topic)
        self._consumer.subscribe(
            [s.topic], on_assign=self._on_assign, on_revoke=self._on_revoke
        )
        endpoint = None
        try:
            if s.metrics_address:
                endpoint = await status.start(s.metrics_address, self)
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
            if endpoint is not None:
                await endpoint.cleanup()
            await asyncio.to_thread(self._consumer.close)
            await self._dlq.close()

    async def _loop(self, stop: asyncio.Event) -> None:
        s = self.settings
        self._active_s = last_progress_s = time.monotonic()
        last_progress = self._progress()
        while not stop.is_set():
            wait_s = CONSUME_MAX_WAIT_S
            if self._items:
                due_s = self._started_s + s.flush_interval_s - time.monotonic()
                wait_s = max(0.0, min(wait_s, due_s))
            messages = await self._consume(self._room(), wait_s)
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

    async def _consume(self, count: int, wait_s: float) -> list[Message]:
        # The group's poll timer restarts when consume is called, not when
        # it returns: owns() counts from here.
        self._polled_s = time.monotonic()
        messages: list[Message] = await asyncio.to_thread(
            self._consumer.consume, count, wait_s
        )
        return messages

    def owns(self, position: Position) -> bool:
        """Whether ``position`` is still ours: assigned, and polled recently.

        A member that has not polled for ``max_poll_interval_s`` has been
        evicted and its partitions given to another, although no revoke has
        reached it yet. A margin keeps a check from racing that deadline.
        """
        if position not in self._assignment:
            return False
        margin_s = min(30.0, self.settings.max_poll_interval_s / 10)
        since_poll_s = time.monotonic() - self._polled_s
        return since_poll_s < self.settings.max_poll_interval_s - margin_s

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
        if not self._items:
            return

        # Step 1: the handler makes the live records durable. A batch held
        # while the backend was away may have lost revoked partitions since.
        offsets = await self._write(stop)
        items = self._items

        # Step 2: dead letters are acknowledged by Kafka before the commit.
        dead = [item for item in items if item.dead]
        if dead and self._dlq is not None:
            await self._dlq.send(dead)
            self.dead_lettered += len(dead)

        # Step 3: only now may the group move past these records.
        await self._commit(next_offsets(items) if offsets is None else offsets)
        self.batches += 1
        self.last_batch_unix_s = time.time()
        self._items = []
        self._size = 0

    async def _write(self, stop: asyncio.Event) -> list[TopicPartition] | None:
        """The handler's write, repeated while its backend is unavailable."""
        paused: set[Position] = set()
        held = False

        async def attempt() -> list[TopicPartition] | None:
            nonlocal held
            if held:
                await self._poll_paused(paused)
            try:
                return await self.handler.write(self._items, stop)
            except BackendUnavailable as exc:
                if not held:
                    held = self.holding = True
                    log.warning(
                        "%s: holding %d records until the backend is back: %s",
                        self.name,
                        len(self._items),
                        exc,
                    )
                    self._pause(paused)
                raise

        self.writing_since_s = time.monotonic()
        try:
            return await retry_async(
                f"{self.name}: writing a held batch",
                attempt,
                retriable=(BackendUnavailable,),
                backoff=HOLD_BACKOFF,
                shutdown=stop,
            )
        finally:
            self.holding = False
            self.writing_since_s = None
            self._resume(paused)

    async def _poll_paused(self, paused: set[Position]) -> None:
        """Poll without fetching, so the group keeps us and rebalances run."""
        self._take(await self._consume(CONSUME_MAX_MESSAGES, 0))
        # Partitions assigned meanwhile are paused too: the batch is held.
        self._pause(paused)

    def _pause(self, paused: set[Position]) -> None:
        # The whole assignment, every time: a partition revoked and assigned
        # again while the batch is held comes back unpaused.
        current = sorted(self._assignment)
        try:
            self._consumer.pause([TopicPartition(t, p) for t, p in current])
        except KafkaException as exc:
            log.warning("%s: cannot pause %s: %s", self.name, current, exc)
            return
        paused.clear()
        paused.update(current)

    def _resume(self, paused: set[Position]) -> None:
        # Only partitions still ours and paused: resuming one that is not
        # paused can move its fetch position back.
        kept = sorted(paused & self._assignment)
        paused.clear()
        if not kept:
            return
        try:
            self._consumer.resume([TopicPartition(t, p) for t, p in kept])
        except KafkaException as exc:
            log.warning("%s: cannot resume %s: %s", self.name, kept, exc)

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
        self._assignment = self._assignment | {
            (tp.topic, tp.partition) for tp in partitions
        }
        log.info("%s: partitions assigned: %s", self.name, _names(partitions))

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Runs inside consume(). Unwritten records of these partitions are
        # dropped; the next owner reads them again from the committed offset.
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        self._assignment = self._assignment - revoked
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
