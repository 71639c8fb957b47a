"""The combination rule, and adjusted counts that add up to the traces seen."""

from __future__ import annotations

import math
import random

import pytest

from streams.sampling import policies as p
from streams.sampling.combine import PolicySet, Verdict
from tests.streams.sampling.views import span, trace


def test_drop_wins_over_any_keep() -> None:
    err = p.StatusCode("err", ["ERROR"])
    policies = PolicySet([p.AlwaysSample("all"), err], [p.Drop("d", [err])])

    verdict = policies.decide(trace(span(status="ERROR")), 0.0)

    assert verdict == Verdict(False, dropped_by="d")
    assert policies.decide(trace(span()), 0.0).kept


def test_deterministic_keep_beats_probabilistic_and_saves_rate_budget() -> None:
    limit = p.RateLimiting("rate", 1, 1)
    policies = PolicySet(
        [limit, p.Probabilistic("all", 100, ""), p.StatusCode("err", ["ERROR"])],
        [],
    )

    verdict = policies.decide(trace(span(status="ERROR")), 0.0)

    assert (verdict.policy, verdict.adjusted_count) == ("err", 1.0)
    assert limit.bucket.tokens == 1  # untouched


def test_nothing_matches_means_not_kept() -> None:
    policies = PolicySet([p.StatusCode("err", ["ERROR"])], [])

    assert policies.decide(trace(span()), 0.0) == Verdict(False)


def kept_count(policies: PolicySet, trace_id: str, now_s: float = 0.0) -> float:
    verdict = policies.decide(trace(span(), trace_id=trace_id), now_s)
    assert verdict.kept and verdict.adjusted_count is not None
    return verdict.adjusted_count


def kept_id(policy: p.Policy) -> str:
    """A trace id that ``policy`` keeps."""
    rng = random.Random(1)
    while True:
        trace_id = f"{rng.getrandbits(128):032x}"
        if policy.evaluate(trace(span(), trace_id=trace_id), 0.0):
            return trace_id


@pytest.mark.parametrize(
    ("keep", "chance"),
    [
        ([p.Probabilistic("q", 25, "a")], 0.25),
        # One salt: the smaller share is inside the larger one.
        ([p.Probabilistic("q", 10, "a"), p.Probabilistic("r", 30, "a")], 0.30),
        # Two salts: independent.
        ([p.Probabilistic("q", 50, "a"), p.Probabilistic("r", 50, "b")], 0.75),
        (
            [
                p.And("q", [p.AlwaysSample("x"), p.Probabilistic("q1", 40, "a")]),
                p.Probabilistic("r", 20, "b"),
            ],
            1 - 0.6 * 0.8,
        ),
    ],
)
def test_a_probabilistic_keep_counts_for_the_whole_policy_set(
    keep: list[p.Policy], chance: float
) -> None:
    policies = PolicySet(keep, [])

    count = kept_count(policies, kept_id(keep[0]))

    assert count == pytest.approx(1 / chance, rel=1e-9)


def test_a_rate_limited_keep_counts_what_the_probabilistic_share_also_took() -> None:
    share = p.Probabilistic("ten", 10, "s")
    limit = p.RateLimiting("rest", spans_per_s=1, burst_spans=1)
    policies = PolicySet([share, limit], [])
    rng = random.Random(3)
    refused = []
    while len(refused) < 4:
        trace_id = f"{rng.getrandbits(128):032x}"
        if not share.evaluate(trace(span(), trace_id=trace_id), 0.0):
            refused.append(trace_id)

    # Four traces the share refused reach the limit at once: one admitted.
    counts = [policies.decide(trace(span(), trace_id=t), 0.0) for t in refused]

    assert [v.kept for v in counts] == [True, False, False, False]
    admitted = limit.bucket.admission()
    assert admitted == pytest.approx(0.25)
    assert kept_count(policies, kept_id(share)) == pytest.approx(
        1 / (0.1 + 0.9 * admitted)
    )


def test_adjusted_counts_of_kept_traces_add_up_to_the_traces_seen() -> None:
    # The shape of the shipped policies: errors kept, a tenth of the rest,
    # then a rate limit over what the tenth left.
    policies = PolicySet(
        [
            p.StatusCode("errors", ["ERROR"]),
            p.Probabilistic("ten-percent", 10, "llmobs"),
            p.RateLimiting("rest", spans_per_s=20, burst_spans=40),
        ],
        [],
    )
    rng = random.Random(11)
    traces, total, variance = 20_000, 0.0, 0.0
    for index in range(traces):
        status = "ERROR" if rng.random() < 0.05 else "UNSET"
        spans = [span(str(i), status=status) for i in range(rng.randint(1, 5))]
        view = trace(*spans, trace_id=f"{rng.getrandbits(128):032x}")
        verdict = policies.decide(view, index / 100)
        if verdict.kept and verdict.adjusted_count is not None:
            total += verdict.adjusted_count
            # Horvitz-Thompson: each kept trace adds (1 - pi) / pi^2.
            variance += (verdict.adjusted_count - 1) * verdict.adjusted_count

    assert abs(total - traces) < 4 * math.sqrt(variance)
    assert abs(total - traces) < 0.05 * traces


def test_an_inverted_match_that_finds_its_value_drops_over_any_keep() -> None:
    not_internal = p.StringAttribute("not-internal", "team", ["infra"], False, True)
    policies = PolicySet([p.AlwaysSample("all"), not_internal], [])
    internal = trace(span(attributes={"team": "infra"}))

    assert policies.decide(internal, 0.0) == Verdict(False, dropped_by="not-internal")
    assert policies.decide(trace(span()), 0.0).kept


def test_an_inverted_match_inside_and_is_only_a_miss() -> None:
    not_internal = p.StringAttribute("not-internal", "team", ["infra"], False, True)
    both = p.And("both", [p.AlwaysSample("x"), not_internal])
    policies = PolicySet([both, p.StatusCode("err", ["ERROR"])], [])
    internal_error = trace(span(status="ERROR", attributes={"team": "infra"}))

    verdict = policies.decide(internal_error, 0.0)

    assert (verdict.kept, verdict.policy) == (True, "err")
