"""What a sink plugs into the consume loop of ``sinks.consumer``.

A consumed record travels as an ``Item``: its decoded payload, or why it goes
to the DLQ. A ``BatchHandler`` decodes records and makes batches of them
durable; ``BackendUnavailable`` is how it asks the loop to hold a batch.
``DeadLetters`` sends dead items to the DLQ topic, confirmed before a commit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from confluent_kafka import KafkaError, Message, Producer, TopicPartition

from llmobs import topics
from llmobs.errors import RetriableStageError, StageError
from llmobs.kafka import producer_config

log = logging.getLogger(__name__)

MAX_DETAIL_CHARS = 500
DLQ_FLUSH_TIMEOUT_S = 30.0

Position = tuple[str, int]


class BackendUnavailable(RetriableStageError):
    """A handler's backend stayed away past its retry deadline; hold the batch.

    The handler keeps track of what it already wrote, so that the same batch
    handed to ``write`` again only sends the rest.
    """


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

        None means every item's next offset. ``BackendUnavailable`` holds the
        batch and calls ``write`` again with it (minus revoked partitions);
        any other error leaves it uncommitted, to be read again after a restart.
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


@runtime_checkable
class ReportsCounters(Protocol):
    """Optional for a handler: counters for the sink's /metrics endpoint."""

    def counters(self) -> list[tuple[str, str, float]]:
        """(name, help, value) of each counter, e.g. ``spans_written``."""


def next_offsets(items: Sequence[Item]) -> list[TopicPartition]:
    """The offset after the last record of each partition among ``items``."""
    ends: dict[Position, int] = {}
    for item in items:
        ends[item.position] = max(ends.get(item.position, 0), item.offset + 1)
    return [TopicPartition(t, p, o) for (t, p), o in sorted(ends.items())]


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


class DeadLetters:
    """Produces dead items, with why, to the DLQ topic and waits for Kafka."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self._producer = Producer(producer_config(bootstrap))
        self._errors: list[KafkaError] = []

    async def send(self, dead: list[Item]) -> None:
        """Raise StageError unless Kafka confirmed every one of ``dead``."""
        self._errors.clear()
        for item in dead:
            self._producer.produce(
                self.topic,
                key=item.message.key(),
                value=item.message.value(),
                headers=dlq_headers(item),
                on_delivery=self._on_delivery,
            )
            log.warning(
                "dead-lettered %s[%d] %d: %s",
                item.position[0],
                item.position[1],
                item.offset,
                item.reason,
            )
        remaining = await asyncio.to_thread(self._producer.flush, DLQ_FLUSH_TIMEOUT_S)
        if remaining or self._errors:
            raise StageError(
                f"dead letters not confirmed by {self.topic}: "
                f"{remaining} pending, errors {self._errors[:3]}"
            )

    async def close(self) -> None:
        await asyncio.to_thread(self._producer.flush, DLQ_FLUSH_TIMEOUT_S)

    def _on_delivery(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            self._errors.append(error)
