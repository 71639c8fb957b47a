"""A round of decisions: judge held traces, deliver the kept, make it durable.

Each step is confirmed by Kafka before the next, so that a crash at any
point loses no span: the kept records are delivered first, then the
decisions are written, then the buffered batches are released. A crash
before the decisions are written leaves the traces buffered, to be decided
(and, if kept, delivered) again after the restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llmobs.retry import Backoff, ShutdownRequested
from schemas import Codec
from streams.sampling.buffer import PendingTrace, TraceBuffer
from streams.sampling.combine import PolicySet, Verdict
from streams.sampling.decisions import Decision, Remembered
from streams.sampling.emit import Emitter, Outgoing
from streams.sampling.metrics import SamplerMetrics
from streams.sampling.state import StateStore, batch_of, batch_position
from streams.sampling.trace import TraceView
from streams.sampling.writes import Writes

log = logging.getLogger(__name__)

NOT_SAMPLED = "not_sampled"

# Queue one table write: (store method, partition, *arguments).
Write = Callable[..., None]


@dataclass(eq=False)
class Made:
    """A decision taken, not yet durable."""

    trace: PendingTrace
    trigger: str
    verdict: Verdict
    decision: Decision
    # (batch key, record) of each buffered batch
    records: list[tuple[bytes, dict[str, Any]]]


class Decider:
    def __init__(
        self,
        policies: PolicySet,
        codec: Codec,
        store: StateStore,
        emitter: Emitter,
        writes: Writes,
        decisions: Remembered,
        metrics: SamplerMetrics,
        write: Write,
    ) -> None:
        self.policies = policies
        self.codec = codec
        self.store = store
        self.emitter = emitter
        self.writes = writes
        self.decisions = decisions
        self.metrics = metrics
        self.write = write

    async def decide(
        self,
        group: list[tuple[PendingTrace, str]],
        buffer: TraceBuffer,
        now_s: float,
        backoff: Backoff,
        halt: asyncio.Event,
    ) -> int:
        """Decide held traces; the ones whose decision fails are held again.

        An unexpected error is reported here rather than raised into the
        timer (where Faust would crash the worker): the traces wait for the
        next tick. A revoke's ``ShutdownRequested`` goes to the caller.
        """
        if not group:
            return 0
        try:
            made, evicted = self.judge(group, now_s)
            for m in made:
                buffer.pop(m.trace.trace_id)
            try:
                failed = await self.persist(made, backoff, halt)
            except BaseException:
                self._hold_again(made, buffer)
                raise
            self._hold_again(failed, buffer)
            done = [m for m in made if m not in failed]
            await self.release(done, evicted, now_s)
        except ShutdownRequested:
            raise
        except Exception as exc:
            self.metrics.failed_decisions += len(group)
            log.warning(
                "deciding %d traces failed (%s: %s); they wait for the next tick",
                len(group),
                type(exc).__name__,
                exc,
            )
            return 0
        return len(done)

    def _hold_again(self, made: list[Made], buffer: TraceBuffer) -> None:
        """Not decided after all: hold the traces again, first in line."""
        for m in reversed(made):
            self.decisions.forget(m.trace.trace_id)
            buffer.put_back(m.trace)

    def judge(
        self, group: list[tuple[PendingTrace, str]], now_s: float
    ) -> tuple[list[Made], list[tuple[str, Decision]]]:
        """Apply the policies; remember each decision at once, so that late
        spans in a later batch follow it. Also returns the decisions evicted
        from the cache to make room."""
        made: list[Made] = []
        evicted: list[tuple[str, Decision]] = []
        for trace, trigger in group:
            records = self.records(trace)
            view = TraceView(trace.trace_id, [record for _, record in records])
            try:
                verdict = self.policies.decide(view, now_s)
            except Exception as exc:  # a policy's bug must not stop the others
                self.metrics.failed_decisions += 1
                log.warning(
                    "trace %s: policies failed (%s: %s); it waits for the next tick",
                    trace.trace_id,
                    type(exc).__name__,
                    exc,
                )
                continue
            decision = Decision(
                verdict.kept,
                verdict.policy,
                verdict.adjusted_count,
                trace.partition,
                now_s,
            )
            evicted += self.decisions.put(trace.trace_id, decision)
            made.append(Made(trace, trigger, verdict, decision, records))
        return made, evicted

    async def persist(
        self, made: list[Made], backoff: Backoff, halt: asyncio.Event
    ) -> list[Made]:
        """Deliver the kept records, then write the decisions durably.

        Returns the decisions whose records Kafka did not take before the
        deadline: they are not written, and their traces wait for a later
        tick. Raises ``ShutdownRequested`` when ``halt`` cuts retries short.
        """
        # Step 1: the kept records are in Kafka.
        kept = [
            Outgoing(
                m.trace.trace_id.encode(),
                mark(record, m.decision),
                *batch_position(key),
            )
            for m in made
            if m.decision.kept
            for key, record in m.records
        ]
        undelivered = {o.key for o in await self.emitter.deliver(kept, backoff, halt)}
        failed = [m for m in made if m.trace.trace_id.encode() in undelivered]
        for m in failed:
            self.metrics.failed_decisions += 1
            log.warning(
                "trace %s: kept records not delivered; it waits for the next tick",
                m.trace.trace_id,
            )

        # Step 2: the decisions are durable, and so are the batches they cover.
        for m in made:
            if m in failed:
                continue
            self.write(
                self.store.put_decision,
                m.trace.partition,
                m.trace.trace_id,
                m.decision.encode(),
            )
        await self.writes.settle()
        return failed

    async def release(
        self, made: list[Made], evicted: list[tuple[str, Decision]], now_s: float
    ) -> None:
        """Step 3: delete the decided batches and the decisions evicted."""
        for m in made:
            for key in m.trace.keys:
                self.write(self.store.delete_batch, m.trace.partition, key)
        for old_trace_id, old in evicted:
            self.write(self.store.delete_decision, old.partition, old_trace_id)
        for m in made:
            self._count(m, now_s)
        await self.writes.settle()

    def records(self, trace: PendingTrace) -> list[tuple[bytes, dict[str, Any]]]:
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
            records.append((key, self.codec.decode(batch_of(value))))
        return self._without_repeats(records)

    def _without_repeats(
        self, records: list[tuple[bytes, dict[str, Any]]]
    ) -> list[tuple[bytes, dict[str, Any]]]:
        """The records with each span once: an export sent twice (a client's
        retry, input decoded again after a restart) holds the same spans."""
        seen: set[tuple[str, str]] = set()
        kept = []
        for key, record in records:
            spans = []
            for span in record["spans"]:
                identity = (record["tenant"], span["span_id"])
                if identity in seen:
                    self.metrics.repeated_spans += 1
                    continue
                seen.add(identity)
                spans.append(span)
            if spans:
                record["spans"] = spans
                kept.append((key, record))
        return kept

    def _count(self, made: Made, now_s: float) -> None:
        trace, verdict = made.trace, made.verdict
        policy = verdict.policy or verdict.dropped_by or NOT_SAMPLED
        latency_s = max(0.0, now_s - trace.first_seen_s)
        kept = made.decision.kept
        self.metrics.decided(policy, kept, trace.spans, made.trigger, latency_s)
        log.debug(
            "trace %s %s by %s (%s, %d spans)",
            trace.trace_id,
            "kept" if kept else "dropped",
            policy,
            made.trigger,
            trace.spans,
        )


def mark(record: dict[str, Any], decision: Decision) -> dict[str, Any]:
    """``record`` carrying the policy that kept it and its adjusted count."""
    record["sampling_policy"] = decision.policy
    record["sampling_adjusted_count"] = decision.adjusted_count
    return record
