"""Stand-ins for the Faust table, output topic and events the agent uses."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import schemas
from streams.metrics.agent import Aggregator
from streams.metrics.settings import MetricsSettings
from tests.streams.metrics.spans import batch, span

# 2025-01-15T10:00:00Z: its windows are long closed by the wall clock.
BASE_NS = 1_736_935_200_000_000_000


class SendFailed(Exception):
    """What the fake broker raises for a send it refuses."""


class FakeTable:
    """A changelog that confirms sends after a yield, or fails them on demand."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        # Every confirmed write in order, as a broker would keep it.
        self.log: list[tuple[int, bytes, bytes | None]] = []
        self.attempts = 0
        self.fail: Callable[[int, int], bool] = lambda _attempt, _partition: False
        self.gate: asyncio.Event | None = None

    def send_changelog(
        self, partition: int, key: bytes, value: bytes | None, *_serializers: Any
    ) -> asyncio.Future[None]:
        self.attempts += 1
        attempt = self.attempts
        return asyncio.ensure_future(self._confirm(attempt, partition, key, value))

    async def _confirm(
        self, attempt: int, partition: int, key: bytes, value: bytes | None
    ) -> None:
        await asyncio.sleep(0)
        if self.gate is not None:
            await self.gate.wait()
        if self.fail(attempt, partition):
            raise SendFailed(f"send {attempt} refused")
        self.log.append((partition, key, value))


class FakeOutput:
    """The output topic: every record sent, confirmed at once."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self._codec = schemas.codec("metric_window")

    async def send(self, key: bytes, value: bytes) -> asyncio.Future[None]:
        self.sent.append(self._codec.decode(value))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


@dataclass
class FakeMessage:
    partition: int
    offset: int
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    acked: bool = False


@dataclass
class FakeEvent:
    message: FakeMessage
    value: Any

    @property
    def headers(self) -> dict[str, bytes]:
        return dict(self.message.headers)


def events(partition: int, offsets: range, tenant: str = "acme") -> list[FakeEvent]:
    """Events of llm.spans, each one SpanBatch with a model request."""
    rng = random.Random(partition)
    return [
        FakeEvent(FakeMessage(partition, offset), batch(tenant, [span(rng, BASE_NS)]))
        for offset in offsets
    ]


class Decoded:
    """The SpanBatch codec for events whose value is already a record."""

    def decode(self, value: Any) -> Any:
        return value


def consumer_acks(batch: list[FakeEvent]) -> list[tuple[int, int]]:
    """What take_events' final acknowledgement hands the consumer to commit."""
    acked = []
    for event in batch:
        if not event.message.acked:
            event.message.acked = True
            acked.append((event.message.partition, event.message.offset))
    return acked


def aggregator(table: FakeTable | None = None) -> Aggregator:
    settings = MetricsSettings(window_s=60, grace_s=0.0)
    worker = Aggregator(settings, "llm.spans", table or FakeTable(), FakeOutput())
    worker._codec = Decoded()  # type: ignore[assignment]
    return worker
