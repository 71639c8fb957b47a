"""Each sampling policy and the rules that combine them."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from streams.sampling import llm_policies as llm
from streams.sampling import policies as p
from streams.sampling import probability
from streams.sampling.trace import TraceView
from tests.streams.sampling.views import span, trace


def hit(policy: p.Policy, view: TraceView) -> bool:
    return policy.evaluate(view, 0.0) is not None


def test_latency_spans_the_whole_trace_and_honours_the_upper_bound() -> None:
    view = trace(
        span("a", start_ms=1000, end_ms=1100), span("b", start_ms=1900, end_ms=2500)
    )

    assert view.duration_ms == 1500
    assert hit(p.Latency("slow", 1000, None), view)
    assert not hit(p.Latency("slow", 2000, None), view)
    assert not hit(p.Latency("band", 100, 1000), view)


@pytest.mark.parametrize(
    ("duration_ms", "threshold_ms", "upper_ms", "kept"),
    [
        (1000, 1000, None, True),  # no upper bound: at least the threshold
        (999.9, 1000, None, False),  # whole milliseconds, truncated
        (1000, 1000, 2000, False),  # with an upper bound: above the threshold
        (1000.9, 1000, 2000, False),
        (1001, 1000, 2000, True),
        (2000.9, 1000, 2000, True),  # and at most the bound
        (2001, 1000, 2000, False),
    ],
)
def test_latency_bounds_are_the_collectors(
    duration_ms: float, threshold_ms: float, upper_ms: float | None, kept: bool
) -> None:
    view = trace(span("a", start_ms=5000, end_ms=5001))
    view.spans[0]["end_unix_nano"] = 5_000_000_000 + int(duration_ms * 1_000_000)

    assert hit(p.Latency("l", threshold_ms, upper_ms), view) is kept


def test_a_rate_limit_inside_and_spends_nothing_when_another_part_misses() -> None:
    limit = p.RateLimiting("budget", spans_per_s=1, burst_spans=1)
    both = p.And("both", [limit, p.StatusCode("err", ["ERROR"])])

    assert not hit(both, trace(span()))
    assert limit.bucket.tokens == 1
    assert limit.bucket.offered == 0
    assert hit(both, trace(span(status="ERROR")))
    assert limit.bucket.tokens == 0


def test_status_code() -> None:
    assert hit(p.StatusCode("e", ["ERROR"]), trace(span(), span(status="ERROR")))
    assert not hit(p.StatusCode("e", ["ERROR"]), trace(span(status="OK")))


def test_numeric_attribute_on_span_or_resource_with_invert() -> None:
    view = trace(span(attributes={"n": 5, "flag": True}), resource={"r": 50})

    assert hit(p.NumericAttribute("n", "n", 1, 10, False), view)
    assert not hit(p.NumericAttribute("n", "n", 6, None, False), view)
    assert hit(p.NumericAttribute("r", "r", 40, None, False), view)
    assert hit(p.NumericAttribute("n", "n", 6, None, True), view)
    # A boolean is no number.
    assert not hit(p.NumericAttribute("f", "flag", 0, None, False), view)


def test_string_attribute_exact_regex_and_invert() -> None:
    view = trace(span(attributes={"route": "/v1/chat"}), resource={"env": "prod"})

    assert hit(p.StringAttribute("s", "route", ["/v1/chat"], False, False), view)
    assert not hit(p.StringAttribute("s", "route", ["/v1"], False, False), view)
    assert hit(p.StringAttribute("s", "route", ["^/v1/"], True, False), view)
    assert hit(p.StringAttribute("s", "env", ["prod"], False, False), view)
    assert hit(p.StringAttribute("s", "env", ["dev"], False, True), view)


def test_boolean_attribute() -> None:
    view = trace(span(attributes={"cached": True}))

    assert hit(p.BooleanAttribute("b", "cached", True, False), view)
    assert not hit(p.BooleanAttribute("b", "cached", False, False), view)


def test_span_count_bounds() -> None:
    view = trace(span("a"), span("b"), span("c"))

    assert hit(p.SpanCount("c", 2, 3), view)
    assert not hit(p.SpanCount("c", 4, None), view)
    assert not hit(p.SpanCount("c", 1, 2), view)


def test_probabilistic_is_deterministic_salted_and_near_its_share() -> None:
    policy = p.Probabilistic("p", 25, "salt")
    # Random, as W3C trace ids are: FNV-1a, the Collector's hash, spreads
    # ids that differ in their last bytes alone poorly.
    rng = random.Random(5)
    ids = [f"{rng.getrandbits(128):032x}" for _ in range(4000)]
    kept = [i for i in ids if policy.evaluate(TraceView(i, []), 0.0)]
    again = [
        i
        for i in ids
        if p.Probabilistic("p", 25, "salt").evaluate(TraceView(i, []), 0.0)
    ]
    other = [
        i
        for i in ids
        if p.Probabilistic("p", 25, "pepper").evaluate(TraceView(i, []), 0.0)
    ]

    assert kept == again
    assert kept != other
    assert 800 < len(kept) < 1200
    assert policy.chance(TraceView(kept[0], [])) == pytest.approx(0.25)


def test_rate_limit_keeps_a_trace_larger_than_its_burst_then_repays() -> None:
    policy = p.RateLimiting("r", spans_per_s=10, burst_spans=10)
    big = trace(*(span(str(i)) for i in range(25)))

    assert hit(policy, big)
    assert not hit(p.RateLimiting("r", 10, 10), trace()) or True
    assert policy.evaluate(big, 1.0) is None  # still in debt: -15 + 10
    assert policy.evaluate(big, 3.0) is not None  # refilled to the burst


def test_rate_limit_admission_reflects_what_it_refused() -> None:
    policy = p.RateLimiting("r", spans_per_s=1, burst_spans=1)
    one = trace(span())
    results = [policy.evaluate(one, 0.0) for _ in range(4)]

    assert [r is not None for r in results] == [True, False, False, False]
    assert policy.chance(one) == 0.25


def test_and_not_and_drop() -> None:
    err = p.StatusCode("err", ["ERROR"])
    slow = p.Latency("slow", 50, None)
    fast_error = trace(span(status="ERROR", end_ms=10))

    assert not hit(p.And("both", [err, slow]), fast_error)
    assert hit(p.And("both", [err, p.Not("fast", slow)]), fast_error)
    assert hit(p.Drop("d", [err]), fast_error)
    assert not hit(p.Drop("d", [err, slow]), fast_error)


def test_composite_falls_through_when_a_share_is_spent() -> None:
    composite = p.Composite(
        "c",
        spans_per_s=10,
        shares=[(p.StatusCode("err", ["ERROR"]), 50), (p.AlwaysSample("rest"), 50)],
    )
    five_errors = trace(*(span(str(i), status="ERROR") for i in range(5)))

    first = composite.evaluate(five_errors, 0.0)
    second = composite.evaluate(five_errors, 0.0)
    third = composite.evaluate(five_errors, 0.0)

    assert first is not None and first.policy == "c/err"
    assert second is not None and second.policy == "c/rest"
    assert third is None


def test_cost_counts_priced_spans_only_and_unknown_never_matches() -> None:
    priced = {"status": "priced", "total_cost": Decimal("0.30")}
    unknown = {"status": "unknown_model", "total_cost": None}
    policy = llm.Cost("cost", Decimal("0.5"))

    assert hit(policy, trace(span("a", cost=priced), span("b", cost=priced)))
    assert not hit(policy, trace(span("a", cost=priced), span("b", cost=unknown)))
    assert not hit(policy, trace(span("a"), span("b")))  # no cost field at all
    assert hit(llm.UnpricedModel("u"), trace(span(cost=unknown)))
    assert not hit(llm.UnpricedModel("u"), trace(span()))


def test_tokens_skip_agent_rollups() -> None:
    chat = {"operation": "chat", "input_tokens": 800, "output_tokens": 300}
    agent = {"operation": "invoke_agent", "input_tokens": 800, "output_tokens": 300}
    view = trace(span("a", genai=agent), span("b", genai=chat))

    assert hit(llm.Tokens("t", 1100, "total"), view)
    assert not hit(llm.Tokens("t", 1101, "total"), view)
    assert hit(llm.Tokens("t", 300, "output"), view)


def test_model_provider_and_model_error() -> None:
    chat = {"operation": "chat", "provider": "OpenAI", "request_model": "gpt-4o"}
    view = trace(span(genai=chat))
    failed = trace(span(genai={**chat, "error_type": "429"}))

    assert hit(llm.Model("m", ["gpt-4o"], False), view)
    assert not hit(llm.Model("m", ["gpt-4"], False), view)
    assert hit(llm.Model("m", ["^gpt-4"], True), view)
    assert hit(llm.Provider("p", ["openai"]), view)
    assert not hit(llm.Provider("p", ["anthropic"]), view)
    assert hit(llm.ModelError("e"), failed)
    assert hit(llm.ModelError("e"), trace(span(status="ERROR", genai=chat)))
    assert not hit(llm.ModelError("e"), view)


# Computed with the Collector's own code (probabilistic.go) and Go's stdlib.
COLLECTOR_THRESHOLDS = [
    (0, 0),
    (0.1, 18446744073709551),
    (1, 184467440737095519),
    (10, 1844674407370955263),
    (12.5, 2305843009213693951),
    (33, 6087425544324152319),
    (33.333, 6148853202089604095),
    (50, 9223372036854775807),
    (66.6, 12285531553090559999),
    (99.99, 18444899399302178815),
    (100, 18446744073709551615),
]
COLLECTOR_HASHES = [
    ("default-hash-seed", "0af7651916cd43dd8448eb211c80319c", 3728843964641534796),
    ("default-hash-seed", "00000000000000000000000000000001", 16254957729900898954),
    ("test", "4bf92f3577b34da6a3ce929d0e0e4736", 1725874534298614141),
    ("llmobs", "ffffffffffffffffffffffffffffffff", 17295536522114773154),
    ("", "0af7651916cd43dd8448eb211c80319c", 5550680739742810548),
]


@pytest.mark.parametrize(("percentage", "expected"), COLLECTOR_THRESHOLDS)
def test_the_threshold_is_the_collectors(percentage: float, expected: int) -> None:
    assert probability.threshold(percentage / 100) == expected


@pytest.mark.parametrize(("salt", "trace_id", "expected"), COLLECTOR_HASHES)
def test_the_trace_id_hash_is_the_collectors(
    salt: str, trace_id: str, expected: int
) -> None:
    assert probability.trace_hash(salt.encode(), trace_id) == expected


def test_probabilistic_keeps_what_the_collector_keeps() -> None:
    # Hash 3728843964641534796 with the default salt: above 20 %, under 21 %.
    trace_id = "0af7651916cd43dd8448eb211c80319c"

    assert not hit(p.Probabilistic("p", 20, ""), trace(trace_id=trace_id))
    assert hit(p.Probabilistic("p", 21, ""), trace(trace_id=trace_id))
    assert hit(p.Probabilistic("p", 21, "default-hash-seed"), trace(trace_id=trace_id))


@pytest.mark.parametrize("salt", ["", "x"])
def test_trace_hash_accepts_non_hex_ids(salt: str) -> None:
    assert probability.trace_hash(salt.encode(), "not-hex") == (
        probability.trace_hash(salt.encode(), "not-hex")
    )
