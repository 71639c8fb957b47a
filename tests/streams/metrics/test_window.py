"""Metric windows: exact totals, late corrections, and replay after a crash."""

from __future__ import annotations

import random
from collections import defaultdict
from decimal import Decimal
from typing import Any

import schemas
from streams.metrics.sketch import RELATIVE_ACCURACY, Sketch, exact_quantile
from streams.metrics.window import CORRECTION, WINDOW, PartitionWindows, identity
from tests.streams.metrics.spans import batch, span, truth

WINDOW_S = 60
T0_NS = 1_750_000_020 * 10**9  # a whole minute
MIN_NS = 60 * 10**9


def summed(records: list[dict[str, Any]]) -> dict[tuple[Any, ...], Any]:
    """Records added up per window and key, as the sink does."""
    out: dict[tuple[Any, ...], Any] = defaultdict(
        lambda: {
            "requests": 0,
            "errors": 0,
            "input_tokens": 0,
            "output_tokens": 0,
            "cost": Decimal(0),
            "sketch": Sketch(),
        }
    )
    for r in records:
        key = (
            r["window_start_ms"],
            r["tenant"],
            r["service"],
            r["provider"],
            r["model"],
            r["operation"],
            r["currency"],
        )
        row = out[key]
        for name in ("requests", "errors", "input_tokens", "output_tokens", "cost"):
            row[name] += r[name]
        row["sketch"].merge(Sketch.from_record(r["latency_sketch"]))
    return out


def check_exact(records: list[dict[str, Any]], batches: list[dict[str, Any]]) -> None:
    expected = truth(batches, WINDOW_S)
    got = summed(records)
    assert set(got) == set(expected)
    for key, row in expected.items():
        for name in ("requests", "errors", "input_tokens", "output_tokens", "cost"):
            assert got[key][name] == row[name], (key, name)
        for q in (0.5, 0.95, 0.99):
            want = exact_quantile(row["latencies"], q)
            assert abs(got[key]["sketch"].quantile(q) - want) <= (
                RELATIVE_ACCURACY * want * 1.000001
            )
    assert len({identity(r) for r in records}) == len(records)


def workload(rng: random.Random, n: int) -> list[dict[str, Any]]:
    batches = []
    for _ in range(n):
        end_ns = T0_NS + rng.randint(0, 3 * MIN_NS)
        spans = [span(rng, end_ns + rng.randint(0, 10**9)) for _ in range(3)]
        spans.append(span(rng, end_ns, operation="invoke_agent"))
        spans.append(span(rng, end_ns, operation="chat", provider=None))
        no_genai = span(rng, end_ns)
        no_genai["genai"] = None
        spans.append(no_genai)
        batches.append(batch(rng.choice(["acme", "globex"]), spans))
    return batches


def test_closed_windows_equal_the_recomputation() -> None:
    rng = random.Random(1)
    batches = workload(rng, 200)
    windows = PartitionWindows("llm.spans[0]", WINDOW_S, grace_s=5)
    for offset, b in enumerate(batches):
        windows.apply(offset, b)
    assert windows.close(now_ms=T0_NS // 10**6) == 0
    windows.close(now_ms=T0_NS // 10**6 + 10 * 60_000)
    assert not windows.open
    assert {r["kind"] for r in windows.outbox} == {WINDOW}
    check_exact(windows.outbox, batches)


def test_agent_and_unknown_spans_are_not_requests() -> None:
    rng = random.Random(2)
    spans = [span(rng, T0_NS, operation=op) for op in ("invoke_agent", "execute_tool")]
    windows = PartitionWindows("p", WINDOW_S, 0)
    assert windows.apply(0, batch("t", spans)) == 0
    assert windows.apply(1, batch("t", [span(rng, T0_NS, operation="embeddings")])) == 1


def test_late_spans_become_a_correction_that_adds_up() -> None:
    rng = random.Random(3)
    on_time = workload(rng, 30)
    late = workload(rng, 10)
    windows = PartitionWindows("llm.spans[0]", WINDOW_S, grace_s=5)
    for offset, b in enumerate(on_time):
        windows.apply(offset, b)
    windows.close(now_ms=T0_NS // 10**6 + 10 * 60_000)
    first = list(windows.outbox)
    for offset, b in enumerate(late, start=len(on_time)):
        windows.apply(offset, b)
    assert not windows.open
    windows.close(now_ms=T0_NS // 10**6 + 11 * 60_000)
    corrections = windows.outbox[len(first) :]
    assert corrections and {r["kind"] for r in corrections} == {CORRECTION}
    check_exact(windows.outbox, on_time + late)


def test_records_encode_with_the_schema() -> None:
    rng = random.Random(5)
    windows = PartitionWindows("llm.spans[0]", WINDOW_S, grace_s=0)
    windows.apply(0, workload(rng, 1)[0])
    windows.close(now_ms=T0_NS // 10**6 + 10 * 60_000)
    codec = schemas.codec("metric_window")
    for record in windows.outbox:
        assert codec.decode(codec.encode(record)) == record


def test_keys_that_join_alike_with_a_bar_have_distinct_identities() -> None:
    rng = random.Random(6)
    windows = PartitionWindows("llm.spans[0]", WINDOW_S, grace_s=0)
    windows.apply(0, batch("t", [span(rng, T0_NS, provider="c")], service="a|b"))
    windows.apply(0 + 1, batch("t", [span(rng, T0_NS, provider="b|c")], service="a"))
    windows.close(now_ms=T0_NS // 10**6 + 10 * 60_000)
    first, second = windows.outbox
    second["first_offset"] = first["first_offset"]
    second["model"] = first["model"]

    assert identity(first) != identity(second)


def test_a_priced_request_that_costs_zero_counts_as_priced() -> None:
    rng = random.Random(9)
    free = span(rng, T0_NS)
    free["cost"] = {"status": "priced", "total_cost": Decimal("0E-12")}
    windows = PartitionWindows("llm.spans[0]", WINDOW_S, grace_s=0)
    windows.apply(0, batch("t", [free]))
    windows.close(now_ms=T0_NS // 10**6 + 10 * 60_000)

    (record,) = windows.outbox
    assert (record["priced_requests"], record["cost"]) == (1, Decimal(0))


def test_costs_in_different_currencies_are_never_summed() -> None:
    rng = random.Random(10)
    spans = []
    for code in ("USD", "EUR", "EUR", None):
        s = span(rng, T0_NS, provider="openai", request_model="gpt-4o")
        s["cost"] = {
            "status": "priced" if code else "unknown_model",
            "currency": code,
            "total_cost": Decimal("0.5") if code else None,
        }
        spans.append(s)
    windows = PartitionWindows("llm.spans[0]", WINDOW_S, grace_s=0)
    windows.apply(0, batch("t", spans))
    windows.close(now_ms=T0_NS // 10**6 + 10 * 60_000)

    got = {r["currency"]: (r["requests"], r["cost"]) for r in windows.outbox}
    # An unpriced request has no currency; it counts under USD.
    assert got == {"USD": (2, Decimal("0.5")), "EUR": (2, Decimal("1.0"))}
    assert len({identity(r) for r in windows.outbox}) == 2
