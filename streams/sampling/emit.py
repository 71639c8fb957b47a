"""Delivery of kept records to the sampled topic, confirmed by Kafka.

Each record is sent and its delivery awaited; a failed one is sent again
with backoff until Kafka has it, the deadline passes, or ``halt`` is set.
A record too large for Kafka (marking a batch makes it a little larger than
its input) is split by spans into records that fit; a single span that
still does not fit goes to the dead-letter topic with the reason, so that
it can never block a partition or crash the worker.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka.errors import MessageSizeTooLargeError, RecordListTooLargeError

from llmobs import topics
from llmobs.errors import RetriableStageError
from llmobs.retry import Backoff, retry_async
from schemas import Codec

log = logging.getLogger(__name__)

# Deliver one record to the sampled topic; resolves to a delivery awaitable.
Send = Callable[[bytes, bytes], Awaitable[Awaitable[Any]]]
# Deliver one record with headers to the dead-letter topic, the same way.
DeadLetterSend = Callable[
    [bytes, bytes, list[tuple[str, bytes]]], Awaitable[Awaitable[Any]]
]

# Broker and client answers that no retry can change: the record never fits.
TOO_LARGE = (MessageSizeTooLargeError, RecordListTooLargeError)
# Room left under the producer's request size for the record batch framing.
FRAMING_BYTES = 4096
TOO_LARGE_REASON = "sampled_record_too_large"


@dataclass
class Outgoing:
    """One kept SpanBatch record, encoded when sent.

    ``partition`` and ``offset`` name the llm.spans record it comes from.
    """

    key: bytes
    record: dict[str, Any]
    partition: int = -1
    offset: int = -1


@dataclass
class _Piece:
    """A record, or part of one, on its way; dead ones go to the DLQ."""

    origin: Outgoing
    record: dict[str, Any]
    value: bytes
    dead: str | None = None


class Emitter:
    def __init__(
        self,
        send: Send,
        codec: Codec,
        max_record_bytes: int = topics.MAX_MESSAGE_BYTES - FRAMING_BYTES,
        dead_letter: DeadLetterSend | None = None,
        source_topic: str = topics.SPANS,
    ) -> None:
        self.send = send
        self.codec = codec
        self.max_record_bytes = max_record_bytes
        self.dead_letter = dead_letter
        self.source_topic = source_topic
        self.split_records = 0
        self.dead_lettered = 0
        self.undeliverable = 0

    async def deliver(
        self, records: Sequence[Outgoing], backoff: Backoff, halt: asyncio.Event
    ) -> list[Outgoing]:
        """Deliver ``records``; the ones Kafka still lacks at the deadline.

        Raises ``ShutdownRequested`` when ``halt`` cuts the retries short.
        """
        remaining = [p for r in records for p in self._pieces(r, r.record)]
        if not remaining:
            return []

        async def attempt() -> None:
            nonlocal remaining
            results = await asyncio.gather(
                *(self._send(p) for p in remaining), return_exceptions=True
            )
            failed = []
            for piece, result in zip(remaining, results, strict=True):
                if not isinstance(result, Exception):
                    continue
                if _too_large(result):
                    failed += self._refused(piece)
                else:
                    failed.append(piece)
            remaining = failed
            errors = [r for r in results if isinstance(r, Exception)]
            if failed:
                raise RetriableStageError(
                    f"{len(failed)} sampled records not delivered: {errors[0]!r}"
                )

        try:
            await retry_async(
                "delivering sampled records",
                attempt,
                (RetriableStageError,),
                backoff,
                halt,
            )
        except RetriableStageError:
            return list({id(p.origin): p.origin for p in remaining}.values())
        return []

    def _pieces(self, origin: Outgoing, record: dict[str, Any]) -> list[_Piece]:
        """``record`` as records that fit, halving its spans as needed."""
        value = self.codec.encode(record)
        if len(value) + len(origin.key) <= self.max_record_bytes:
            return [_Piece(origin, record, value)]
        return self._split(_Piece(origin, record, value))

    def _refused(self, piece: _Piece) -> list[_Piece]:
        """What to send instead of a piece the broker refused as too large."""
        if piece.dead is not None:
            # Not even the dead-letter topic takes it: say so, once.
            self.undeliverable += 1
            log.error(
                "a %d-byte sampled record of %s[%d] %d fits no topic; dropped",
                len(piece.value),
                self.source_topic,
                piece.origin.partition,
                piece.origin.offset,
            )
            return []
        return self._split(piece)

    def _split(self, piece: _Piece) -> list[_Piece]:
        spans = piece.record["spans"]
        if len(spans) <= 1:
            self.dead_lettered += 1
            log.warning(
                "a %d-byte sampled record of %s[%d] %d is too large to deliver; "
                "it goes to the dead-letter topic",
                len(piece.value),
                self.source_topic,
                piece.origin.partition,
                piece.origin.offset,
            )
            piece.dead = f"a {len(piece.value)}-byte kept record exceeds the limit"
            return [piece]
        self.split_records += 1
        half = len(spans) // 2
        return [
            p
            for part in (spans[:half], spans[half:])
            for p in self._pieces(piece.origin, {**piece.record, "spans": part})
        ]

    async def _send(self, piece: _Piece) -> Any:
        if piece.dead is None:
            delivery = await self.send(piece.origin.key, piece.value)
        elif self.dead_letter is None:
            self.undeliverable += 1
            log.error("no dead-letter topic: a too-large sampled record is dropped")
            return None
        else:
            delivery = await self.dead_letter(
                piece.origin.key, piece.value, self._headers(piece)
            )
        return await delivery

    def _headers(self, piece: _Piece) -> list[tuple[str, bytes]]:
        return [
            (topics.HEADER_DLQ_REASON, TOO_LARGE_REASON.encode()),
            (topics.HEADER_DLQ_DETAIL, (piece.dead or "").encode()),
            (topics.HEADER_DLQ_TOPIC, self.source_topic.encode()),
            (topics.HEADER_DLQ_PARTITION, str(piece.origin.partition).encode()),
            (topics.HEADER_DLQ_OFFSET, str(piece.origin.offset).encode()),
        ]


def _too_large(error: BaseException) -> bool:
    """Kafka refused the record for its size, directly or wrapped by Faust."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, TOO_LARGE):
            return True
        seen = seen.__cause__
    return False
