"""Changelog writes in flight, awaited before anything may depend on them.

A table write is in the local store at once but reaches its changelog only
when Kafka acknowledges it, and Faust's flush before a commit gives up after
a moment. The sampler keeps each write's future here and waits for all of
them, resending failed ones, before an input offset may be committed, a
decision's batches released, or a rebalance let go of a partition.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from llmobs.errors import RetriableStageError
from llmobs.retry import Backoff, retry_async

log = logging.getLogger(__name__)

# As long as the partition stays ours: giving up would lose buffered spans.
WRITE_BACKOFF = Backoff(initial_s=0.5, max_s=15.0, deadline_s=math.inf)

# Sends one table write (changelog and local store); resolves once in Kafka.
Send = Callable[[], Awaitable[Any]]


@dataclass
class _Write:
    send: Send
    partition: int
    future: asyncio.Future[Any] | None


class Writes:
    """Table writes not yet known to be in Kafka."""

    def __init__(self, halt: asyncio.Event, backoff: Backoff = WRITE_BACKOFF) -> None:
        self.halt = halt
        self.backoff = backoff
        self.pending: list[_Write] = []

    def __len__(self) -> int:
        return len(self.pending)

    def add(self, send: Send, partition: int) -> None:
        """Send a write for ``partition`` now; ``send`` is called again if it
        fails."""
        self.pending.append(_Write(send, partition, _start(send)))

    def forget(self, partitions: set[int]) -> None:
        """Never send again the writes of partitions taken away."""
        self.pending = [w for w in self.pending if w.partition not in partitions]

    async def settle(self) -> None:
        """Return once Kafka has every pending write; resend failed ones.

        Retries until they succeed or ``halt`` is set (a rebalance takes the
        partitions away), then raises ``ShutdownRequested``; the writes not
        confirmed are dropped, never sent again.
        """
        remaining, self.pending = self.pending, []
        if not remaining:
            return

        async def attempt() -> None:
            nonlocal remaining
            for write in remaining:
                if write.future is None:
                    write.future = _start(write.send)
            # asyncio.wait, unlike gather, leaves the futures alone if this
            # task is cancelled: the producer still resolves them.
            await asyncio.wait([w.future for w in remaining if w.future])
            failed = [w for w in remaining if _failed(w.future)]
            for write in failed:
                write.future = None
            remaining = failed
            if failed:
                raise RetriableStageError(
                    f"{len(failed)} sampler state writes not in Kafka"
                )

        await retry_async(
            "writing sampler state",
            attempt,
            (RetriableStageError,),
            self.backoff,
            self.halt,
        )


def _start(send: Send) -> asyncio.Future[Any]:
    """The write's future; a send that raised at once is a failed future."""
    try:
        return asyncio.ensure_future(send())
    except Exception as exc:  # retried like a write Kafka refused
        failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        failed.set_exception(exc)
        return failed


def _failed(future: asyncio.Future[Any] | None) -> bool:
    if future is None or future.cancelled():
        return True
    return future.exception() is not None
