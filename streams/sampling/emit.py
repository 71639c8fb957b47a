"""Delivery of kept records to the sampled topic, confirmed by Kafka.

Each record is sent and its delivery awaited; a failed one is sent again
with backoff until Kafka has it, the deadline passes, or ``halt`` is set.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from llmobs.errors import RetriableStageError
from llmobs.retry import Backoff, retry_async
from schemas import Codec

log = logging.getLogger(__name__)

# Deliver one record to the sampled topic; resolves to a delivery awaitable.
Send = Callable[[bytes, bytes], Awaitable[Awaitable[Any]]]


@dataclass
class Outgoing:
    """One kept SpanBatch record, encoded when sent."""

    key: bytes
    record: dict[str, Any]


class Emitter:
    def __init__(self, send: Send, codec: Codec, halt: asyncio.Event) -> None:
        self.send = send
        self.codec = codec
        self.halt = halt

    async def deliver(self, records: Sequence[Outgoing], backoff: Backoff) -> None:
        """Return once Kafka has every record; raise when retries give up."""
        remaining = list(records)
        if not remaining:
            return

        async def attempt() -> None:
            nonlocal remaining
            results = await asyncio.gather(
                *(self._send(r) for r in remaining), return_exceptions=True
            )
            failed = [
                (record, result)
                for record, result in zip(remaining, results, strict=True)
                if isinstance(result, Exception)
            ]
            remaining = [record for record, _ in failed]
            if failed:
                error = failed[0][1]
                raise RetriableStageError(
                    f"{len(failed)} of {len(results)} sampled records not "
                    f"delivered: {type(error).__name__}: {error}"
                )

        await retry_async(
            "delivering sampled records",
            attempt,
            (RetriableStageError,),
            backoff,
            self.halt,
        )

    async def _send(self, outgoing: Outgoing) -> Any:
        delivery = await self.send(outgoing.key, self.codec.encode(outgoing.record))
        return await delivery
