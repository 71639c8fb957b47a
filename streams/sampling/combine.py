"""The rule that combines the sampling policies, and the adjusted count.

Any drop policy that matches drops the trace, and so does a top-level
attribute policy with invert_match that finds its value (the Collector's
InvertNotSampled); otherwise the first stateless keep wins (a deterministic
one over a probabilistic one); only a trace nothing else keeps spends
rate-limit budgets.

A kept trace's adjusted count is 1 / P(kept): the probability, over random
trace ids and the budgets' recent admission rates, that this policy set
keeps a trace with these spans. So the adjusted counts of the kept traces
add up to the number of traces, whichever policy kept each one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from streams.sampling import probability
from streams.sampling.policies import Drop, Policy, satisfied
from streams.sampling.probability import Term
from streams.sampling.trace import TraceView


@dataclass(frozen=True)
class Verdict:
    kept: bool
    policy: str | None = None
    adjusted_count: float | None = None
    dropped_by: str | None = None


class PolicySet:
    """The configured policies and the combination rule."""

    def __init__(self, keep: Sequence[Policy], drop: Sequence[Drop]) -> None:
        self.drop = list(drop)
        self.inverted = [p for p in keep if p.invert]
        self.stateless = [p for p in keep if not p.stateful]
        self.stateful = [p for p in keep if p.stateful]

    @property
    def names(self) -> list[str]:
        return [p.name for p in (*self.drop, *self.stateless, *self.stateful)]

    def decide(self, trace: TraceView, now_s: float) -> Verdict:
        # Step 1: a drop policy that matches wins over any keep.
        drop_terms: list[Term] = []
        for drop in self.drop:
            term = drop.condition(trace)
            if term is None:
                continue
            if satisfied(term, trace):
                return Verdict(False, dropped_by=drop.name)
            drop_terms.append(term)
        for policy in self.inverted:
            if policy.vetoes(trace):
                return Verdict(False, dropped_by=policy.name)

        # Step 2: stateless keeps; a deterministic one is reported first.
        keep_terms: list[Term] = []
        kept_by: str | None = None
        deterministic = False
        for policy in self.stateless:
            term = policy.condition(trace)
            if term is None:
                continue
            keep_terms.append(term)
            if deterministic or not satisfied(term, trace):
                continue
            if kept_by is None or not term:
                kept_by, deterministic = policy.name, not term
                if deterministic and not drop_terms:
                    return Verdict(True, kept_by, 1.0)

        # Step 3: budgets are spent only on traces that nothing else keeps.
        # Their admission rates are read first: the chance of this trace
        # being admitted, not counting its own outcome.
        admissions = [policy.chance(trace) for policy in self.stateful]
        if kept_by is None:
            for policy in self.stateful:
                match = policy.evaluate(trace, now_s)
                if match is not None:
                    kept_by = match.policy
                    break
        if kept_by is None:
            return Verdict(False)
        kept_chance = _keep_chance(keep_terms, drop_terms, admissions)
        return Verdict(True, kept_by, 1.0 / kept_chance if kept_chance > 0 else 1.0)


def _keep_chance(
    keep_terms: list[Term], drop_terms: list[Term], admissions: list[float]
) -> float:
    """P(kept) for a trace with these spans: kept by a stateless policy and
    not dropped, or else claimed by neither and admitted by a budget (the
    budgets' rates taken as independent of the trace id)."""
    union = probability.union_chance
    chance = union(keep_terms)
    if drop_terms:
        both = [probability.both(k, d) for k in keep_terms for d in drop_terms]
        chance -= union(both)
        unclaimed = 1.0 - union(keep_terms + drop_terms)
    else:
        unclaimed = 1.0 - chance
    if unclaimed > 0 and admissions:
        # A budget's own hash conditions use salts no other policy uses (the
        # config refuses a shared one), so its admission is independent.
        refused = math.prod(1.0 - admitted for admitted in admissions)
        chance += unclaimed * (1.0 - refused)
    return min(1.0, chance)
