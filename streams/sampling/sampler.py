"""The sampler's logic: buffer batches per trace, decide, emit, remember.

Free of Faust so that it can be driven directly; ``agent.py`` binds it to
the Faust agent, timer and tables. Span batches wait in ``StateStore`` (the
tables: a local store and its changelog), and only their keys in memory.
Order on a decision, so that a crash at any point
loses no span: the kept batches are delivered first, then the decision is
written, then the buffered batches are released.

Decisions, input batches, restores and revokes take turns under one lock,
and state is written only for partitions this worker owns: a rebalance waits
for the running decision, then forgets the partitions it takes away.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from llmobs.errors import SchemaError
from schemas import Codec
from streams.sampling.buffer import PendingTrace, TraceBuffer
from streams.sampling.decisions import Decision, DecisionCache
from streams.sampling.metrics import SamplerMetrics
from streams.sampling.policies import PolicySet
from streams.sampling.settings import SamplingSettings
from streams.sampling.trace import TraceView

log = logging.getLogger(__name__)

ARRIVAL = struct.Struct(">d")
NOT_SAMPLED = "not_sampled"

# Deliver one record to the sampled topic; resolves to a delivery awaitable.
Send = Callable[[bytes, bytes], Awaitable[Awaitable[Any]]]


class StateStore(Protocol):
    """Durable state of the sampler, written per input partition."""

    def get_batch(self, partition: int, key: bytes) -> bytes | None: ...

    def put_batch(self, partition: int, key: bytes, value: bytes) -> None: ...

    def delete_batch(self, partition: int, key: bytes) -> None: ...

    def put_decision(self, partition: int, trace_id: str, value: bytes) -> None: ...

    def delete_decision(self, partition: int, trace_id: str) -> None: ...


def batch_key(trace_id: str, partition: int, offset: int) -> bytes:
    """Same input record, same key: replaying input overwrites, never doubles."""
    return f"{trace_id}/{partition}/{offset}".encode()


def parse_batch_key(key: bytes) -> tuple[str, int]:
    trace_id, partition, _ = key.decode().split("/")
    return trace_id, int(partition)


class Sampler:
    def __init__(
        self,
        settings: SamplingSettings,
        policies: PolicySet,
        codec: Codec,
        store: StateStore,
        send: Send,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.policies = policies
        self.codec = codec
        self.store = store
        self.send = send
        self.clock = clock
        self.buffer = TraceBuffer()
        self.decisions = DecisionCache(settings.decision_cache_size)
        self.metrics = SamplerMetrics()
        # Taken by every decision, input batch, restore and revoke.
        self.lock = asyncio.Lock()
        # Input partitions whose state this worker may read and write.
        self.owned: set[int] = set()
        # False from the start of a revoke until the next restore.
        self.ready = False

    async def on_batch(self, partition: int, offset: int, value: bytes) -> None:
        """One SpanBatch record of ``llm.spans``."""
        async with self.lock:
            if partition not in self.owned:
                self.metrics.unowned_batches += 1
                log.warning(
                    "llm.spans[%d] offset %d: partition not owned, skipped",
                    partition,
                    offset,
                )
                return
            await self._on_batch(partition, offset, value)

    async def _on_batch(self, partition: int, offset: int, value: bytes) -> None:
        now_s = self.clock()
        try:
            record = self.codec.decode(value)
        except SchemaError as exc:
            self.metrics.undecodable_batches += 1
            log.warning("skipped llm.spans[%d] offset %d: %s", partition, offset, exc)
            return

        trace_id = record["trace_id"]
        spans = record["spans"]
        decision = self.decisions.get(trace_id)
        if decision is not None:
            self._late(trace_id, record, decision)
            if decision.kept:
                # Delivered before this offset is committed (Faust flushes first).
                await self.send(trace_id.encode(), self._mark(record, decision))
            return

        key = batch_key(trace_id, partition, offset)
        stored = ARRIVAL.pack(now_s) + value
        trace = self.buffer.add(
            trace_id, partition, key, len(stored), len(spans), _root_ended(spans), now_s
        )
        if trace is None:
            self.metrics.duplicate_batches += 1
            return
        self.store.put_batch(partition, key, stored)

        if trace.spans >= self.settings.max_spans_per_trace:
            await self._force(trace, "max_spans_per_trace")
        elif trace.size_bytes >= self.settings.max_bytes_per_trace:
            await self._force(trace, "max_bytes_per_trace")
        while len(self.buffer) > self.settings.max_traces:
            oldest = self.buffer.oldest()
            if oldest is None:
                break
            await self._force(oldest, "max_traces")
        self._gauges()

    async def decide_due(self) -> int:
        """Decide every complete-and-quiet or expired trace; return how many."""
        due = self.buffer.due(
            self.clock(), self.settings.decision_wait_s, self.settings.quiet_period_s
        )
        decided = 0
        for trace, trigger in due:
            # Between two decisions a revoke may have run, or an input batch
            # forced this trace out: check again under the lock.
            if not self.ready:
                break
            async with self.lock:
                if not self._held(trace):
                    continue
                await self._decide(trace, trigger)
                decided += 1
        return decided

    async def decide(self, trace: PendingTrace, trigger: str) -> Decision:
        """Decide ``trace`` now (it must be held, its partition owned)."""
        async with self.lock:
            return await self._decide(trace, trigger)

    async def revoke(self, partitions: set[int]) -> None:
        """Stop deciding, wait for the running decision, forget ``partitions``.

        Their traces and decisions stay in the tables, from which the next
        owner recovers them; nothing more is written for them here.
        """
        self.ready = False
        async with self.lock:
            self.owned -= partitions
            forgotten = list(self.buffer.forget(self.owned))
            self.decisions.forget_partitions(partitions)
            self._gauges()
        log.info(
            "sampler gave up partitions %s (%d pending traces)",
            sorted(partitions),
            len(forgotten),
        )

    def _held(self, trace: PendingTrace) -> bool:
        return (
            self.ready
            and trace.partition in self.owned
            and self.buffer.traces.get(trace.trace_id) is trace
        )

    async def _decide(self, trace: PendingTrace, trigger: str) -> Decision:
        now_s = self.clock()
        records = self._records(trace)
        self.buffer.pop(trace.trace_id)
        verdict = self.policies.decide(TraceView(trace.trace_id, records), now_s)
        decision = Decision(
            verdict.kept, verdict.policy, verdict.adjusted_count, trace.partition, now_s
        )
        # Remembered at once, so spans arriving during the emit follow it.
        evicted = self.decisions.put(trace.trace_id, decision)

        try:
            if decision.kept:
                key = trace.trace_id.encode()
                pending = [
                    await self.send(key, self._mark(r, decision)) for r in records
                ]
                for delivery in pending:
                    await delivery
        except BaseException:
            # Not decided after all: hold it again to retry on the next tick.
            self.decisions.forget(trace.trace_id)
            self.buffer.put_back(trace)
            raise

        # Only now durable: a crash before this line leaves the trace buffered,
        # to be decided (and, if kept, emitted) again after the restart. The
        # lock kept a revoke out, so the partition is still ours.
        self.store.put_decision(trace.partition, trace.trace_id, decision.encode())
        for key in trace.keys:
            self.store.delete_batch(trace.partition, key)
        for old_trace_id, old in evicted:
            self.store.delete_decision(old.partition, old_trace_id)
        self.metrics.decision_cache_evictions += len(evicted)

        policy = verdict.policy or verdict.dropped_by or NOT_SAMPLED
        latency_s = max(0.0, now_s - trace.first_seen_s)
        self.metrics.decided(policy, decision.kept, trace.spans, trigger, latency_s)
        log.debug(
            "trace %s %s by %s (%s, %d spans)",
            trace.trace_id,
            "kept" if decision.kept else "dropped",
            policy,
            trigger,
            trace.spans,
        )
        self._gauges()
        return decision

    async def restore(
        self,
        batches: Iterable[tuple[bytes, bytes]],
        decisions: Iterable[tuple[bytes, bytes]],
        partitions: set[int],
    ) -> list[bytes]:
        """Rebuild the in-memory state from the tables after a recovery.

        Waits for a running decision first, so that what it writes is read
        back here rather than decided again. Returns the batch keys whose
        trace is already decided (a crash came between the decision and the
        release); the caller deletes them.
        """
        async with self.lock:
            stale = self._restore(batches, decisions, partitions)
            self.owned = set(partitions)
            self.ready = True
            return stale

    def _restore(
        self,
        batches: Iterable[tuple[bytes, bytes]],
        decisions: Iterable[tuple[bytes, bytes]],
        partitions: set[int],
    ) -> list[bytes]:
        self.buffer = TraceBuffer()
        self.decisions.clear()
        known = [(k.decode(), Decision.decode(v)) for k, v in decisions]
        for trace_id, decision in sorted(known, key=lambda kd: kd[1].decided_s):
            if decision.partition in partitions:
                self.decisions.put(trace_id, decision)

        stale: list[bytes] = []
        held = []
        for key, value in batches:
            trace_id, partition = parse_batch_key(key)
            if partition not in partitions:
                continue
            if self.decisions.get(trace_id) is not None:
                stale.append(key)
                continue
            held.append(
                (ARRIVAL.unpack_from(value)[0], key, value, trace_id, partition)
            )
        for arrival_s, key, value, trace_id, partition in sorted(held):
            record = self.codec.decode(value[ARRIVAL.size :])
            spans = record["spans"]
            root_ended = _root_ended(spans)
            self.buffer.add(
                trace_id, partition, key, len(value), len(spans), root_ended, arrival_s
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

    def _records(self, trace: PendingTrace) -> list[dict[str, Any]]:
        """The trace's buffered batches, read back from the store."""
        records = []
        for key in trace.keys:
            value = self.store.get_batch(trace.partition, key)
            if value is None:
                # The local store lost what its changelog holds: say so loudly.
                self.metrics.missing_batches += 1
                log.error(
                    "trace %s: buffered batch %r not in the store", trace.trace_id, key
                )
                continue
            records.append(self.codec.decode(value[ARRIVAL.size :]))
        return records

    async def _force(self, trace: PendingTrace, cap: str) -> None:
        self.metrics.forced[cap] += 1
        log.warning(
            "trace %s reached %s (%d spans, %d bytes): deciding early",
            trace.trace_id,
            cap,
            trace.spans,
            trace.size_bytes,
        )
        await self._decide(trace, f"forced_{cap}")

    def _late(self, trace_id: str, record: dict[str, Any], decision: Decision) -> None:
        self.metrics.late_spans["kept" if decision.kept else "dropped"] += len(
            record["spans"]
        )
        log.debug("late batch of trace %s follows its decision", trace_id)

    def _mark(self, record: dict[str, Any], decision: Decision) -> bytes:
        record["sampling_policy"] = decision.policy
        record["sampling_adjusted_count"] = decision.adjusted_count
        return self.codec.encode(record)

    def _gauges(self) -> None:
        self.metrics.traces_held = len(self.buffer)
        self.metrics.spans_held = self.buffer.spans
        self.metrics.bytes_held = self.buffer.held_bytes
        self.metrics.decisions_cached = len(self.decisions)


def _root_ended(spans: list[dict[str, Any]]) -> bool:
    return any(not s.get("parent_span_id") and s["end_unix_nano"] for s in spans)
