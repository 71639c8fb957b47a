"""Sampling policies over whole traces; ``combine.py`` holds the rule over them.

A policy states its ``condition`` on a trace: None when the trace's spans
rule a match out, else the ``Term`` its id's hash must satisfy (the empty
term for a deterministic match). ``evaluate`` applies it, and spends a
budget where the policy has one (``stateful``); ``chance`` is the probability
of a match over random trace ids and the budgets' recent admission rates,
from which the policy set derives each kept trace's adjusted count.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from streams.sampling import probability
from streams.sampling.probability import ALWAYS, Term
from streams.sampling.trace import TraceView

STATUS_CODES = ("OK", "ERROR", "UNSET")
# Decay of the offered/admitted counts that estimate a budget's admission rate.
_ESTIMATE_HALF_LIFE_S = 10.0


@dataclass(frozen=True)
class Match:
    """A keep (or, from a drop policy, a drop) and the policy to report."""

    policy: str


class Policy:
    """One named rule; ``stateful`` ones consume a budget when they match."""

    stateful = False
    # An attribute policy with invert_match: finding the value vetoes the
    # trace when the policy stands at the top level, as in the Collector.
    invert = False

    def __init__(self, name: str) -> None:
        self.name = name

    def matches(self, trace: TraceView) -> bool:
        """For a deterministic policy: whether the trace's spans match."""
        raise NotImplementedError

    def condition(self, trace: TraceView) -> Term | None:
        return ALWAYS if self.matches(trace) else None

    def evaluate(self, trace: TraceView, now_s: float) -> Match | None:
        term = self.condition(trace)
        if term is None or not satisfied(term, trace):
            return None
        return Match(self.name)

    def chance(self, trace: TraceView) -> float:
        term = self.condition(trace)
        return 0.0 if term is None else probability.chance(term)

    def vetoes(self, trace: TraceView) -> bool:
        """An inverted match that found its value: the trace must be dropped."""
        return self.invert and not self.matches(trace)


def all_of(policies: Sequence[Policy], trace: TraceView) -> Term | None:
    """The condition under which every one of ``policies`` matches."""
    term = ALWAYS
    for policy in policies:
        sub = policy.condition(trace)
        if sub is None:
            return None
        term = probability.both(term, sub)
    return term


def satisfied(term: Term, trace: TraceView) -> bool:
    """Whether the trace's id meets every threshold of ``term``."""
    return all(
        probability.passes(trace.id_hash(salt), limit) for salt, limit in term.items()
    )


class AlwaysSample(Policy):
    def matches(self, trace: TraceView) -> bool:
        return True


class Latency(Policy):
    """Whole-trace duration in whole milliseconds, as the Collector has it:
    at least ``threshold_ms``, or with an upper bound above the threshold
    and at most the bound."""

    def __init__(self, name: str, threshold_ms: float, upper_ms: float | None) -> None:
        super().__init__(name)
        self.threshold_ms = threshold_ms
        self.upper_ms = upper_ms

    def matches(self, trace: TraceView) -> bool:
        duration_ms = int(trace.duration_ms)
        if self.upper_ms is None:
            return duration_ms >= self.threshold_ms
        return self.threshold_ms < duration_ms <= self.upper_ms


class StatusCode(Policy):
    def __init__(self, name: str, codes: Sequence[str]) -> None:
        super().__init__(name)
        self.codes = frozenset(codes)

    def matches(self, trace: TraceView) -> bool:
        return any(s["status_code"] in self.codes for s in trace.spans)


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

    def matches(self, trace: TraceView) -> bool:
        found = any(
            self._in_range(v)
            for v in trace.attribute_values(self.key)
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        )
        return found != self.invert

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

    def matches(self, trace: TraceView) -> bool:
        found = any(
            self._matches(v)
            for v in trace.attribute_values(self.key)
            if isinstance(v, str)
        )
        return found != self.invert

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

    def matches(self, trace: TraceView) -> bool:
        found = any(v is self.value for v in trace.attribute_values(self.key))
        return found != self.invert


class SpanCount(Policy):
    def __init__(self, name: str, min_spans: int, max_spans: int | None) -> None:
        super().__init__(name)
        self.min_spans = min_spans
        self.max_spans = max_spans

    def matches(self, trace: TraceView) -> bool:
        count = trace.span_count
        too_many = self.max_spans is not None and count > self.max_spans
        return count >= self.min_spans and not too_many


class Probabilistic(Policy):
    """A share of trace ids by a salted hash, as the Collector keeps them:
    every worker, and a Collector with the same salt, keeps the same ones."""

    def __init__(self, name: str, percentage: float, salt: str) -> None:
        super().__init__(name)
        self.percentage = percentage
        self.salt = (salt or probability.DEFAULT_SALT).encode()
        self.limit = probability.threshold(percentage / 100)

    def condition(self, trace: TraceView) -> Term | None:
        return {self.salt: self.limit}


class TokenBucket:
    """Spans per second with a burst; a trace larger than the burst still fits.

    A positive balance admits a whole trace and may go into debt, so a trace
    bigger than the burst is kept once the bucket is full, and the debt is
    repaid before the next one. Traces offered and admitted lately estimate
    the chance that the next one is admitted.
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
        self.offered += 1
        if self.tokens <= 0:
            return False
        self.tokens -= spans
        self.admitted += 1
        return True

    def admission(self) -> float:
        """Share of the traces offered lately that were admitted."""
        if self.offered <= 0:
            return 1.0
        return min(1.0, self.admitted / self.offered)


class RateLimiting(Policy):
    stateful = True

    def __init__(self, name: str, spans_per_s: float, burst_spans: float) -> None:
        super().__init__(name)
        self.bucket = TokenBucket(spans_per_s, burst_spans)

    def condition(self, trace: TraceView) -> Term | None:
        return ALWAYS

    def evaluate(self, trace: TraceView, now_s: float) -> Match | None:
        if not self.bucket.take(trace.span_count, now_s):
            return None
        return Match(self.name)

    def chance(self, trace: TraceView) -> float:
        return self.bucket.admission()


class And(Policy):
    """Every sub-policy matches; budgets are spent only once all others did."""

    def __init__(self, name: str, policies: Sequence[Policy]) -> None:
        super().__init__(name)
        self.policies = list(policies)
        self.budgets = [p for p in self.policies if p.stateful]
        self.stateful = bool(self.budgets)

    def condition(self, trace: TraceView) -> Term | None:
        """The sub-policies' conditions together, budgets aside."""
        return all_of([p for p in self.policies if not p.stateful], trace)

    def evaluate(self, trace: TraceView, now_s: float) -> Match | None:
        if super().evaluate(trace, now_s) is None:
            return None
        # The config allows one budget here: a second could refuse a trace
        # the first already spent its tokens on.
        for budget in self.budgets:
            if budget.evaluate(trace, now_s) is None:
                return None
        return Match(self.name)

    def chance(self, trace: TraceView) -> float:
        return super().chance(trace) * math.prod(b.chance(trace) for b in self.budgets)


class Not(Policy):
    """Matches when its (deterministic) sub-policy does not."""

    def __init__(self, name: str, policy: Policy) -> None:
        super().__init__(name)
        self.policy = policy

    def matches(self, trace: TraceView) -> bool:
        return self.policy.condition(trace) is None


class Drop(Policy):
    """Drops the trace when every sub-policy matches; wins over any keep."""

    def __init__(self, name: str, policies: Sequence[Policy]) -> None:
        super().__init__(name)
        self.policies = list(policies)

    def condition(self, trace: TraceView) -> Term | None:
        return all_of(self.policies, trace)


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

    def condition(self, trace: TraceView) -> Term | None:
        if any(p.condition(trace) is not None for p, _ in self.shares):
            return ALWAYS
        return None

    def evaluate(self, trace: TraceView, now_s: float) -> Match | None:
        for policy, bucket in self.shares:
            match = policy.evaluate(trace, now_s)
            if match is None or not bucket.take(trace.span_count, now_s):
                continue
            return Match(f"{self.name}/{match.policy}")
        return None

    def chance(self, trace: TraceView) -> float:
        """Any share admitting it, each independently of those before."""
        missed = math.prod(
            1.0 - policy.chance(trace) * bucket.admission()
            for policy, bucket in self.shares
        )
        return 1.0 - missed
