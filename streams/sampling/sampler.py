"""The sampler's logic: buffer batches per trace, decide, emit, remember.

Free of Faust so that it can be driven directly; ``agent.py`` binds it to
the Faust agent, timer and tables. Span batches wait in ``StateStore`` (the
tables: a local store and its changelog), and only their keys in memory.

An input batch is acknowledged only once Kafka has its writes and late
deliveries; ``decide.py`` orders the steps of a decision the same way.

Decisions, input batches, restores and revokes take turns under one lock,
and state is written only for partitions this worker owns: a rebalance waits
for the running decision, then forgets the partitions it takes away.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from functools import partial
from typing import Any

from llmobs.errors import SchemaError
from llmobs.retry import Backoff, ShutdownRequested
from schemas import Codec
from streams.sampling.buffer import PendingTrace, TraceBuffer
from streams.sampling.combine import PolicySet
from streams.sampling.decide import Decider, mark
from streams.sampling.decisions import Decision, Remembered
from streams.sampling.emit import Emitter, Outgoing
from streams.sampling.metrics import SamplerMetrics
from streams.sampling.settings import SamplingSettings
from streams.sampling.state import (
    StateStore,
    batch_key,
    batch_of,
    held_batches,
    parse_batch_key,
    stored,
)
from streams.sampling.trace import ended_before, root_ended
from streams.sampling.writes import Writes

log = logging.getLogger(__name__)

# Traces decided per turn of the lock; their writes are confirmed together.
DECISION_GROUP = 256
# Late records of an input batch: retried as long as the partition stays
# ours, since the batch cannot be acknowledged before they are delivered.
LATE_BACKOFF = Backoff(initial_s=0.5, max_s=15.0, deadline_s=math.inf)
# Records of a decision: a tick gives up after a while and tries again later.
DECISION_BACKOFF = Backoff(initial_s=0.2, max_s=2.0, deadline_s=10.0)

# (partition, offset, value) of one llm.spans record.
Record = tuple[int, int, bytes]


class Sampler:
    """Tail sampling of the input partitions this worker owns."""

    def __init__(
        self,
        settings: SamplingSettings,
        policies: PolicySet,
        codec: Codec,
        store: StateStore,
        emitter: Emitter,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.policies = policies
        self.codec = codec
        self.store = store
        self.clock = clock
        self.buffer = TraceBuffer()
        self.metrics = SamplerMetrics()
        self.decisions = Remembered(
            settings.decision_cache_size,
            settings.decision_ttl_s,
            store,
            self._write,
            self.metrics,
        )
        # Taken by every decision, input batch, restore and revoke.
        self.lock = asyncio.Lock()
        # Input partitions whose state this worker may read and write.
        self.owned: set[int] = set()
        # False from the start of a revoke until the next restore.
        self.ready = False
        # Set by a revoke: retries of writes and deliveries stop.
        self.halt = asyncio.Event()
        self.writes = Writes(self.halt)
        self.emitter = emitter
        self.decider = Decider(
            policies,
            codec,
            store,
            self.emitter,
            self.writes,
            self.decisions,
            self.metrics,
            self._write,
        )
        self.decision_group = DECISION_GROUP
        self.decision_backoff = DECISION_BACKOFF

    async def on_batch(self, partition: int, offset: int, value: bytes) -> bool:
        """One SpanBatch record of ``llm.spans``; False when it is not durable."""
        return not await self.on_records([(partition, offset, value)])

    async def on_records(self, records: Sequence[Record]) -> set[int]:
        """Buffer records of ``llm.spans``; the partitions not made durable.

        Returns once the records' writes and late deliveries are confirmed;
        the records of the partitions returned (not owned, or revoked first)
        must not be acknowledged.
        """
        async with self.lock:
            skipped: set[int] = set()
            late: list[Outgoing] = []
            grown: dict[str, PendingTrace] = {}
            for partition, offset, value in records:
                if partition not in self.owned:
                    skipped.add(partition)
                    self.metrics.unowned_batches += 1
                    continue
                trace = self._add(partition, offset, value, late)
                if trace is not None:
                    grown[trace.trace_id] = trace
            if skipped:
                log.warning(
                    "llm.spans partitions %s not owned: records left unprocessed",
                    sorted(skipped),
                )
            try:
                await self._force_all(self._over_caps(grown.values()))
                # Delivered and written before the caller acknowledges them.
                await self.emitter.deliver(late, LATE_BACKOFF, self.halt)
                await self.writes.settle()
            except ShutdownRequested:
                return {partition for partition, _, _ in records}
            finally:
                self._gauges()
        return skipped

    async def decide_due(self) -> int:
        """Decide every complete-and-quiet or expired trace; return how many."""
        due = self.buffer.due(
            self.clock(), self.settings.decision_wait_s, self.settings.quiet_period_s
        )
        decided = 0
        size = self.decision_group
        for start in range(0, len(due), size):
            # Between two groups a revoke may have run, or an input batch
            # forced a trace out: check again under the lock.
            if not self.ready:
                break
            async with self.lock:
                group = [
                    (trace, trigger)
                    for trace, trigger in due[start : start + size]
                    if self._held(trace)
                ]
                try:
                    decided += await self._decide_all(group)
                except ShutdownRequested:
                    return decided
        await self._expire()
        return decided

    async def _expire(self) -> None:
        """Forget decisions past ``decision_ttl_s``, a slice per tick."""
        async with self.lock:
            if not self.ready:
                return
            self.decisions.expire(self.clock(), self.owned)
            try:
                await self.writes.settle()
            except ShutdownRequested:
                return
            self._gauges()

    async def revoke(self, partitions: set[int]) -> None:
        """Stop deciding, wait for the running decision, forget ``partitions``.

        Their traces and decisions stay in the tables, from which the next
        owner recovers them; nothing more is written for them here.
        """
        self.ready = False
        self.halt.set()
        async with self.lock:
            self.owned -= partitions
            self.writes.forget(partitions)
            forgotten = list(self.buffer.forget(self.owned))
            self.decisions.forget_partitions(partitions)
            self._gauges()
        log.info(
            "sampler gave up partitions %s (%d pending traces)",
            sorted(partitions),
            len(forgotten),
        )

    async def restore(
        self,
        batches: Iterable[tuple[bytes, bytes]],
        decisions: Iterable[tuple[bytes, bytes]],
        partitions: set[int],
    ) -> list[bytes]:
        """Rebuild the in-memory state from the tables after a recovery.

        Waits for a running decision first, so that what it wrote is read
        back here rather than decided again. Deletes, and returns, the batch
        keys whose trace is already decided (a crash came between the
        decision and the release). Traces beyond the caps (lowered since, or
        another worker's partitions added) are decided at once.
        """
        async with self.lock:
            self.halt.clear()
            self.owned = set(partitions)
            stale = self._restore(batches, decisions, partitions)
            for key in stale:
                self._write(self.store.delete_batch, parse_batch_key(key)[1], key)
            await self.writes.settle()
            await self._force_all(self._over_caps([]))
            self.ready = True
            return stale

    def _held(self, trace: PendingTrace) -> bool:
        return (
            self.ready
            and trace.partition in self.owned
            and self.buffer.traces.get(trace.trace_id) is trace
        )

    def _add(
        self, partition: int, offset: int, value: bytes, late: list[Outgoing]
    ) -> PendingTrace | None:
        """Buffer one record; the trace it grew, if any."""
        now_s = self.clock()
        try:
            record = self.codec.decode(value)
        except SchemaError as exc:
            self.metrics.undecodable_batches += 1
            log.warning("skipped llm.spans[%d] offset %d: %s", partition, offset, exc)
            return None

        trace_id = record["trace_id"]
        spans = record["spans"]
        held = trace_id in self.buffer
        decision = None if held else self.decisions.get(trace_id, partition)
        if decision is not None:
            self._late(trace_id, record, decision)
            if decision.kept:
                late.append(
                    Outgoing(
                        trace_id.encode(), mark(record, decision), partition, offset
                    )
                )
            return None
        if not held and ended_before(spans, self.decisions.forgotten_before_s(now_s)):
            # A new trace whose spans all ended before the newest decision
            # forgotten: late spans, most likely, of a decision no longer known.
            self.metrics.late_spans["unknown"] += len(spans)

        key = batch_key(trace_id, partition, offset)
        value = stored(now_s, value)
        trace = self.buffer.add(
            trace_id, partition, key, len(value), len(spans), root_ended(spans), now_s
        )
        if trace is None:
            # Replayed input, already buffered: after a crash the local store
            # may hold a batch whose changelog write never left the process,
            # so the write is sent again (the same key and value: idempotent).
            self.metrics.duplicate_batches += 1
            first = self.store.get_batch(partition, key)
            self._write(self.store.put_batch, partition, key, first or value)
            return None
        self._write(self.store.put_batch, partition, key, value)
        return trace

    def _over_caps(
        self, grown: Iterable[PendingTrace]
    ) -> list[tuple[PendingTrace, str]]:
        return self.buffer.over_caps(
            grown,
            self.settings.max_spans_per_trace,
            self.settings.max_bytes_per_trace,
            self.settings.max_traces,
            self.settings.max_buffer_bytes,
        )

    async def _force_all(self, forced: list[tuple[PendingTrace, str]]) -> None:
        for trace, cap in forced:
            self.metrics.forced[cap] += 1
            log.warning(
                "trace %s reached %s (%d spans, %d bytes): deciding early",
                trace.trace_id,
                cap,
                trace.spans,
                trace.size_bytes,
            )
        await self._decide_all([(trace, f"forced_{cap}") for trace, cap in forced])

    async def _decide_all(self, group: list[tuple[PendingTrace, str]]) -> int:
        now_s = self.clock()
        decided = await self.decider.decide(
            group, self.buffer, now_s, self.decision_backoff, self.halt
        )
        self._gauges()
        return decided

    def _write(self, write: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Send a table write for partition ``args[0]``, unless it is not ours."""
        if args[0] not in self.owned:
            # The lock keeps revokes out while state is written: a bug if hit.
            log.error("no write for llm.spans[%d]: partition not owned", args[0])
            return
        self.writes.add(partial(write, *args), args[0])

    def _restore(
        self,
        batches: Iterable[tuple[bytes, bytes]],
        decisions: Iterable[tuple[bytes, bytes]],
        partitions: set[int],
    ) -> list[bytes]:
        self.buffer = TraceBuffer()
        self.decisions.restore(decisions, partitions)

        stale: list[bytes] = []
        for held in held_batches(batches, partitions):
            if self.decisions.get(held.trace_id, held.partition) is not None:
                stale.append(held.key)
                continue
            spans = self.codec.decode(batch_of(held.value))["spans"]
            self.buffer.add(
                held.trace_id,
                held.partition,
                held.key,
                len(held.value),
                len(spans),
                root_ended(spans),
                held.arrival_s,
            )
        self.metrics.restored_traces += len(self.buffer)
        log.info(
            "sampler restored %d pending traces and %d decisions on partitions %s",
            len(self.buffer),
            len(self.decisions),
            sorted(partitions),
        )
        self._gauges()
        return stale

    def _late(self, trace_id: str, record: dict[str, Any], decision: Decision) -> None:
        self.metrics.late_spans["kept" if decision.kept else "dropped"] += len(
            record["spans"]
        )
        log.debug("late batch of trace %s follows its decision", trace_id)

    def _gauges(self) -> None:
        self.metrics.traces_held = len(self.buffer)
        self.metrics.spans_held = self.buffer.spans
        self.metrics.bytes_held = self.buffer.held_bytes
        self.metrics.decisions_cached = len(self.decisions)
        self.metrics.split_records = self.emitter.split_records
        self.metrics.dead_lettered_records = self.emitter.dead_lettered
        self.metrics.undeliverable_records = self.emitter.undeliverable
