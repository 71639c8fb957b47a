"""Cost records as OTLP attributes for Tempo."""

from __future__ import annotations

from decimal import Decimal

from streams.cost import cost_attributes


def test_amounts_travel_as_exact_strings_and_nulls_are_left_out() -> None:
    cost = {
        "status": "priced",
        "currency": "USD",
        "input_cost": Decimal("0.001500000000"),
        "cache_read_cost": Decimal("0E-12"),
        "cache_write_cost": None,
        "output_cost": Decimal("0.004000000000"),
        "reasoning_cost": None,
        "total_cost": Decimal("0.005500000000"),
        "catalog": "genai-prices 0.2.3",
        "matched_provider": "openai",
        "matched_model": "gpt-4o",
        "match": "exact gpt-4o",
        "reported_cost": None,
    }

    attributes = {kv.key: kv.value.string_value for kv in cost_attributes(cost)}

    assert attributes["llmobs.cost.total"] == "0.005500000000"
    assert attributes["llmobs.cost.cache_read"] == "0.000000000000"
    assert attributes["llmobs.cost.status"] == "priced"
    assert attributes["llmobs.cost.currency"] == "USD"
    assert attributes["llmobs.cost.matched_model"] == "gpt-4o"
    assert "llmobs.cost.reasoning" not in attributes
    assert "llmobs.cost.reported" not in attributes


def test_unpriced_span_carries_its_status_only() -> None:
    cost = {
        "status": "unknown_model",
        "catalog": "genai-prices 0.2.3",
        "match": "no price for x",
        "total_cost": None,
    }

    keys = [kv.key for kv in cost_attributes(cost)]

    assert keys == ["llmobs.cost.status", "llmobs.cost.catalog", "llmobs.cost.match"]
    assert cost_attributes(None) == []
