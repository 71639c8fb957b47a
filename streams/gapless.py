"""A Kafka transport for the stream worker whose consumer never skips input.

Faust's consumer drops records it has fetched but cannot hand on yet (a
partition not active while tables recover, flow stopped by a rebalance in
the middle of a fetched batch) while the fetch position has already moved
past them. The next record it yields is then ahead of the last one read,
and Faust counts the offsets in between as processed: they are committed
without ever being read. The stream worker's input topics are neither
compacted nor transactional, so their offsets are contiguous and such a jump
always means records were dropped: this consumer keeps the offset due next
per partition (after the last record handed on, or where a seek put the
fetcher) and, when a later one arrives, seeks back to it, so the dropped
records are fetched again.

A jump that a seek back cannot close (the records are gone from the broker,
deleted by retention) is let through once it repeats from the same offset,
with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

from faust.transport.drivers import aiokafka
from faust.types import TP, Message

log = logging.getLogger(__name__)


def rewind_to(expected: int | None, offset: int) -> int | None:
    """Where to read again from when ``offset`` arrives while ``expected``
    (the offset after the last one handed on, or the one sought to) was due;
    None when nothing was skipped."""
    if expected is None or offset <= expected:
        return None
    return expected


class GaplessConsumer(aiokafka.Consumer):
    """Seeks back over records Faust dropped instead of committing them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rewinds = 0
        # Partition -> the offset due next from the fetcher.
        self._expected: dict[TP, int] = {}
        # Partition -> the offset it was last sought back to.
        self._rewound_to: dict[TP, int] = {}

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:
        # Records after a jump are fetched again after the seek: the rest of
        # this batch for that partition is dropped too.
        rewinding: set[TP] = set()
        async for tp, message in super().getmany(timeout):
            if tp in rewinding:
                continue
            back_to = self._check(tp, message)
            if back_to is not None:
                rewinding.add(tp)
                await self.seek(tp, back_to)
                continue
            if message.offset >= self._expected.get(tp, 0):
                self._expected[tp] = message.offset + 1
            yield tp, message

    async def seek_to_committed(self) -> Mapping[TP, int]:
        committed = await super().seek_to_committed()
        for tp, offset in committed.items():
            self._expect(tp, offset)
        return committed

    async def seek_wait(self, partitions: Mapping[TP, int]) -> None:
        await super().seek_wait(partitions)
        for tp, offset in partitions.items():
            self._expect(tp, offset)

    async def _seek(self, partition: TP, offset: int) -> None:
        await super()._seek(partition, offset)
        self._expect(partition, offset)

    def _expect(self, tp: TP, offset: int | None) -> None:
        # No committed offset: the fetcher starts where the reset policy says.
        if offset is None or offset < 0:
            self._expected.pop(tp, None)
        else:
            self._expected[tp] = offset

    def _check(self, tp: TP, message: Message) -> int | None:
        back_to = rewind_to(self._expected.get(tp), message.offset)
        if back_to is None or not self.app.topics.acks_enabled_for(message.topic):
            return None
        if self._rewound_to.get(tp) == back_to:
            log.warning(
                "%s[%d]: offsets %d to %d are no longer on the broker; "
                "going on from %d",
                tp.topic,
                tp.partition,
                back_to,
                message.offset - 1,
                message.offset,
            )
            return None
        self._rewound_to[tp] = back_to
        self.rewinds += 1
        log.warning(
            "%s[%d]: fetched offset %d while %d was due; reading again from %d",
            tp.topic,
            tp.partition,
            message.offset,
            back_to,
            back_to,
        )
        return back_to


class GaplessTransport(aiokafka.Transport):
    """The aiokafka transport with ``GaplessConsumer``."""

    Consumer = GaplessConsumer
