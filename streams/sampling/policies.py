"""Sampling policies over whole traces and the rule that combines them.

Each policy answers with a ``Match`` (keep, with the policy name reported on
the kept spans and the adjusted count: how many traces the kept one stands
for) or None. Combination: any drop policy that matches drops the trace;
otherwise the first stateless keep wins (a deterministic one over a
probabilistic one); only a trace nothing else keeps spends rate-limit tokens.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from streams.sampling.trace import TraceView

STATUS_CODES = ("OK", "ERROR", "UNSET")
# Decay of the offered/admitted sums that estimate a rate limit's adjusted count.
_ESTIMATE_HALF_LIFE_S = 10.0


@dataclass(frozen=True)
class Match:
    policy: str
    adjusted_count: float = 1.0


@dataclass(frozen=True)
class Verdict:
    kept: bool
    policy: str | None = None
    adjusted_count: float | None = None
    dropped_by: str | None = None


class Policy:
    """One named rule; ``stateful`` ones consume a budget when they match."""

    stateful = False

    def __init__(self, name: str) -> None:
        self.name = name

    def evaluate(self, trace: TraceView, now_s: float) -> Match | None:
        raise NotImplementedError

    def _hit(self, matched: bool) -> Match | None:
        return Match(self.name) if matched else None


class AlwaysSample(Policy):
    def evaluate(self, trace: TraceView, now_s: float) -> Match | None:
        return Match(self.name)


class Latency(Policy):
    """Whole-trace duration at or above a threshold, optionally at most an upper."""

    def __init__(self, name: str, threshold_ms: float, upper_ms: float | None) -> None:
        super().__init__(name)
        self.threshold_ms = threshold_ms
        self.upper_ms = upper_ms

    def evaluate(self, trace: TraceView, now_s: float) -> Match | None:
        duration_ms = trace.duration_ms
        if self.upper_ms is not None and duration_ms > self.upper_ms:
            return None
        return self._hit(duration_ms >= self.threshold_ms)


class StatusCode(Policy):
    def __init__(self, name: str, codes: Sequence[str]) -> None:
        super().__init__(name)
        self.codes = frozenset(codes)

    def evaluate(self, trace: TraceView, now_s: float) -> Match | None:
        return self._hit(any(s["status_code"] in self.codes for s in trace.spans))


class NumericAttribute(Policy):
    def __init__(
        self,
        name: str,
        key: str,
        min_value: float | None,
        max_value: float | None,
        invert: bool,
    ) -> None:
        super().__init__(name)
        self.key = key
        self.min_value = min_value
        self.max_value = max_value
        self.invert = invert

    def evaluate(self, trace: TraceView, now_s: float) -> Match | None:
        found = any(
            self._in_range(v)
            for v in trace.attribute_values(self.key)
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        )
        return self._hit(found != self.invert)

    def _in_range(self, value: float) -> bool:
        if self.min_value is not None and value < self.min_value:
            return False
        return self.max_value is None or value <= self.max_value


class StringAttribute(Policy):
    """Exact values, or regular expressions searched in the value."""

    def __init__(
        self, name: str, key: str, values: Sequence[str], regex: bool, invert: bool
    ) -> None:
        super().__init__(name)
        self.key = key
        self.values = frozenset(values)
        self.patterns = [re.compile(v) for v in values] if regex else []
        self.invert = invert

    def evaluate(self, trace: TraceView, now_s: float) -> Match | None:
        found = any(
            self._matches(v)
            for v in trace.attribute_values(self.key)
            if isinstance(v, str)
        )
        return self._hit(found != self.invert)

    def _matches(self, value: str) -> bool:
        if self.patterns:
            return any(p.search(value) for p in self.patterns)
        return value in self.values


class BooleanAttribute(Policy):
    def __init__(self, name: str, key: str, value: bool, invert: bool) -> None:
        super().__init__(name)
        self.key = key
        self.value = value
        self.invert = invert

    def evaluate(self, trace: TraceView, now_s: float) -> Match | None:
        found = any(v is self.value for v in trace.attribute_values(self.key))
        return self._hit(found != self.invert)


class SpanCount(Policy):
    def __init__(self, name: str, min_spans: int, max_spans: int | None) -> None:
        super().__init__(name)
        self.min_spans = min_spans
        self.max_spans = max_spans

    def evaluate(self, trace: TraceView, now_s: float) -> Match | None:
        count = trace.span_count
        too_many = self.max_spans is not None and count > self.max_spans
        return self._hit(count >= self.min_spans and not too_many)


class Probabilistic(Policy):
    """A share of trace ids by a salted hash: every worker decides the same."""

    def __init__(self, name: str, percentage: float, salt: str) -> None:
        super().__init__(name)
        self.percentage = percentage
        self.salt = salt.encode()
        self._threshold = int(percentage / 100 * (1 << 64))

    def evaluate(self, trace: TraceView, now_s: float) -> Match | None:
        if self.percentage <= 0:
            return None
        if trace_hash(self.salt, trace.trace_id) >= self._threshold:
            return None
        return Match(self.name, 100.0 / self.percentage)


def trace_hash(salt: bytes, trace_id: str) -> int:
    """64-bit BLAKE2b of the salt and the trace id: uniform even for close ids."""
    try:
        data = salt + bytes.fromhex(trace_id)
    except ValueError:
        data = salt + trace_id.encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


class TokenBucket:
    """Spans per second with a burst; a trace larger than the burst still fits.

    A positive balance admits a whole trace and may go into debt, so a trace
    bigger than the burst is kept once the bucket is full, and the debt is
    repaid before the next one.
    """

    def __init__(self, spans_per_s: float, burst_spans: float) -> None:
        self.spans_per_s = spans_per_s
        self.burst_spans = burst_spans
        self.tokens = burst_spans
        self.updated_s: float | None = None
        self.offered = 0.0
        self.admitted = 0.0

    def take(self, spans: int, now_s: float) -> bool:
        if self.updated_s is not None:
            elapsed_s = max(0.0, now_s - self.updated_s)
            refill = elapsed_s * self.spans_per_s
            self.tokens = min(self.burst_spans, self.tokens + refill)
            decay = math.exp(-elapsed_s * math.log(2) / _ESTIMATE_HALF_LIFE_S)
            self.offered *= decay
            self.admitted *= decay
        self.updated_s = now_s
        self.offered += spans
        if self.tokens <= 0:
            return False
        self.tokens -= spans
        self.admitted += spans
        return True

    def adjusted_count(self) -> float:
        """Offered over admitted spans lately: the inverse keep probability."""
        if self.admitted <= 0:
            return 1.0
        return max(1.0, self.offered / self.admitted)


class RateLimiting(Policy):
    stateful = True

    def __init__(self, name: str, spans_per_s: float, burst_spans: float) -> None:
        super().__init__(name)
        self.bucket = TokenBucket(spans_per_s, burst_spans)

    def evaluate(self, trace: TraceView, now_s: float) -> Match | None:
        if not self.bucket.take(trace.span_count, now_s):
            return None
        return Match(self.name, self.bucket.adjusted_count())


class And(Policy):
    """Every sub-policy matches; evaluated in order, stopping at the first miss."""

    def __init__(self, name: str, policies: Sequence[Policy]) -> None:
        super().__init__(name)
        self.policies = list(policies)
        self.stateful = any(p.stateful for p in self.policies)

    def evaluate(self, trace: TraceView, now_s: float) -> Match | None:
        adjusted = 1.0
        for policy in self.policies:
            match = policy.evaluate(trace, now_s)
            if match is None:
                return None
            adjusted *= match.adjusted_count
        return Match(self.name, adjusted)


class Not(Policy):
    """Matches when its (deterministic) sub-policy does not."""

    def __init__(self, name: str, policy: Policy) -> None:
        super().__init__(name)
        self.policy = policy

    def evaluate(self, trace: TraceView, now_s: float) -> Match | None:
        return self._hit(self.policy.evaluate(trace, now_s) is None)


class Drop(Policy):
    """Drops the trace when every sub-policy matches; wins over any keep."""

    def __init__(self, name: str, policies: Sequence[Policy]) -> None:
        super().__init__(name)
        self.policies = list(policies)

    def evaluate(self, trace: TraceView, now_s: float) -> Match | None:
        for policy in self.policies:
            if policy.evaluate(trace, now_s) is None:
                return None
        return Match(self.name)


class Composite(Policy):
    """Ordered sub-policies, each with a share of a total span rate.

    A sub-policy whose share is spent lets the trace fall through to the
    next one instead of dropping it.
    """

    stateful = True

    def __init__(
        self, name: str, spans_per_s: float, shares: Sequence[tuple[Policy, float]]
    ) -> None:
        super().__init__(name)
        self.shares = [
            (policy, TokenBucket(rate, rate))
            for policy, percent in shares
            for rate in [spans_per_s * percent / 100]
        ]

    def evaluate(self, trace: TraceView, now_s: float) -> Match | None:
        for policy, bucket in self.shares:
            match = policy.evaluate(trace, now_s)
            if match is None or not bucket.take(trace.span_count, now_s):
                continue
            adjusted = match.adjusted_count * bucket.adjusted_count()
            return Match(f"{self.name}/{match.policy}", adjusted)
        return None


class PolicySet:
    """The configured policies and the combination rule."""

    def __init__(self, keep: Sequence[Policy], drop: Sequence[Drop]) -> None:
        self.drop = list(drop)
        self.stateless = [p for p in keep if not p.stateful]
        self.stateful = [p for p in keep if p.stateful]

    @property
    def names(self) -> list[str]:
        return [p.name for p in (*self.drop, *self.stateless, *self.stateful)]

    def decide(self, trace: TraceView, now_s: float) -> Verdict:
        for drop in self.drop:
            if drop.evaluate(trace, now_s) is not None:
                return Verdict(False, dropped_by=drop.name)

        best: Match | None = None
        for policy in self.stateless:
            match = policy.evaluate(trace, now_s)
            if match is not None and (
                best is None or match.adjusted_count < best.adjusted_count
            ):
                best = match
                if best.adjusted_count <= 1.0:
                    break
        if best is not None:
            return Verdict(True, best.policy, best.adjusted_count)

        # Budgets are spent only on traces that nothing else keeps.
        for policy in self.stateful:
            match = policy.evaluate(trace, now_s)
            if match is not None:
                return Verdict(True, match.policy, match.adjusted_count)
        return Verdict(False)
