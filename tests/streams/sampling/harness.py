"""A sampler driven directly: a dict store, a fake clock, a recording send."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import schemas
from streams.sampling import policies as p
from streams.sampling.combine import PolicySet
from streams.sampling.emit import Emitter
from streams.sampling.sampler import Sampler
from streams.sampling.settings import SamplingSettings

CODEC = schemas.codec("span_batch")
PARTITIONS = {0, 1, 2}


def done() -> asyncio.Future[None]:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future


class MemoryStore:
    """The tables' changelog as dicts: what a restarted worker would recover.

    A write is in the dicts at once; its future is what ``acks`` returns,
    already resolved unless a test supplies another.
    """

    def __init__(self, decisions_on_disk: bool = False) -> None:
        self.decisions_on_disk = decisions_on_disk
        self.batches: dict[bytes, bytes] = {}
        self.decisions: dict[bytes, bytes] = {}
        # (table, partition, key) of every write, in order.
        self.writes: list[tuple[str, int, bytes]] = []
        self.acks: Callable[[], asyncio.Future[None]] = done

    def get_batch(self, partition: int, key: bytes) -> bytes | None:
        return self.batches.get(key)

    def put_batch(self, partition: int, key: bytes, value: bytes) -> Any:
        self.writes.append(("batch", partition, key))
        self.batches[key] = value
        return self.acks()

    def delete_batch(self, partition: int, key: bytes) -> Any:
        self.writes.append(("batch", partition, key))
        self.batches.pop(key, None)
        return self.acks()

    def put_decision(self, partition: int, trace_id: str, value: bytes) -> Any:
        self.writes.append(("decision", partition, trace_id.encode()))
        self.decisions[trace_id.encode()] = value
        return self.acks()

    def delete_decision(self, partition: int, trace_id: str) -> Any:
        self.writes.append(("decision", partition, trace_id.encode()))
        self.decisions.pop(trace_id.encode(), None)
        return self.acks()

    def get_decision(self, partition: int, trace_id: str) -> bytes | None:
        return self.decisions.get(trace_id.encode())

    def scan_decisions(
        self, partition: int, after: bytes | None, limit: int
    ) -> list[tuple[bytes, bytes]]:
        keys = sorted(k for k in self.decisions if after is None or k > after)
        return [(k, self.decisions[k]) for k in keys[:limit]]


class Clock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


class Harness:
    def __init__(
        self, policies: PolicySet, decisions_on_disk: bool = False, **overrides: Any
    ) -> None:
        values = {"decision_wait_s": 30.0, "quiet_period_s": 2.0, **overrides}
        self.settings = SamplingSettings(**values)
        self.store = MemoryStore(decisions_on_disk)
        self.clock = Clock()
        self.sent: list[dict[str, Any]] = []
        self.dead: list[tuple[dict[str, Any], dict[str, bytes]]] = []
        self.offset = 0
        # While cleared, a send waits: a delivery the test holds up.
        self.gate = asyncio.Event()
        self.gate.set()
        self.sending = asyncio.Event()
        self.sampler = self.new_sampler(policies)

    @classmethod
    async def start(
        cls, policies: PolicySet, decisions_on_disk: bool = False, **overrides: Any
    ) -> Harness:
        """A harness whose sampler owns ``PARTITIONS``, as after a recovery."""
        harness = cls(policies, decisions_on_disk, **overrides)
        await harness.sampler.restore([], [], set(PARTITIONS))
        return harness

    def new_sampler(self, policies: PolicySet) -> Sampler:
        self.emitter = Emitter(self.send, CODEC, dead_letter=self.dead_letter)
        return Sampler(
            self.settings, policies, CODEC, self.store, self.emitter, clock=self.clock
        )

    async def dead_letter(
        self, key: bytes, value: bytes, headers: list[tuple[str, bytes]]
    ) -> Any:
        self.dead.append((CODEC.decode(value), dict(headers)))
        return done()

    async def send(self, key: bytes, value: bytes) -> Any:
        self.sending.set()
        await self.gate.wait()
        self.sent.append(CODEC.decode(value))
        return done()

    async def feed(self, value: bytes, partition: int = 0) -> None:
        self.offset += 1
        await self.sampler.on_batch(partition, self.offset, value)

    async def restart(self, policies: PolicySet) -> list[bytes]:
        """A new sampler recovering what the store holds, as after a crash."""
        self.sampler = self.new_sampler(policies)
        return await self.sampler.restore(
            list(self.store.batches.items()),
            list(self.store.decisions.items()),
            set(PARTITIONS),
        )

    def sent_spans(self, trace_id: str) -> set[str]:
        return {
            s["span_id"]
            for r in self.sent
            if r["trace_id"] == trace_id
            for s in r["spans"]
        }


KEEP_ALL = PolicySet([p.AlwaysSample("all")], [])
KEEP_ERRORS = PolicySet([p.StatusCode("errors", ["ERROR"])], [])
