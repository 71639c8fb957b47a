"""The operator prices file: accepted shapes and errors that name the entry."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from llmobs.errors import ConfigError
from streams.cost import Pricer, overrides


def parse(text: str) -> overrides.Overrides:
    return overrides.parse(yaml.safe_load(text), "prices.yaml")


def test_a_full_file_is_read() -> None:
    found = parse(
        """
        aliases:
          - {name: GPT-Prod, provider: azure.ai.openai, model: gpt-4o}
        prices:
          - {model: my-llm, provider: vllm, from: 2025-02-01, currency: eur,
             input_mtok: 0.1, output_mtok: "0.2", cache_read_mtok: 0.01}
        discounts:
          - {provider: openai, tenant: acme, percent: 12.5}
        """
    )

    assert found.source == "override:prices.yaml"
    assert found.alias("azure.ai.openai", "gpt-prod", "t") is not None
    assert found.alias("openai", "gpt-prod", "t") is None
    (price,) = found.prices_for("vllm", "my-llm", "anyone")
    assert price.rates.currency == "EUR"
    assert price.rates.input is not None
    assert price.rates.input.base_mtok == Decimal("0.1")
    assert str(price.effective) == "2025-02-01"
    (discount,) = found.discounts_for("openai", ["gpt-4o"], "acme")
    assert discount.factor == Decimal("0.875")
    assert found.discounts_for("openai", ["gpt-4o"], "other") == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prices: {model: x}", "prices must be a list"),
        ("models: []", "unknown section(s) models"),
        (
            "prices: [{model: m, input_mtok: 1}]",
            "prices[0] (m): output_mtok is required",
        ),
        (
            "prices: [{model: m, input_mtok: 1, output_mtok: -2}]",
            "prices[0] (m): output_mtok must be between 0",
        ),
        (
            "prices: [{model: m, input_mtok: abc, output_mtok: 1}]",
            "prices[0] (m): input_mtok must be a number",
        ),
        (
            "prices: [{model: m, input_mtok: 1, output_mtok: 1, prompt_mtok: 1}]",
            "prices[0] (m): unknown key(s) prompt_mtok",
        ),
        (
            "prices: [{model: m, input_mtok: 1, output_mtok: 1, from: soon}]",
            "prices[0] (m): from must be a date",
        ),
        (
            "prices: [{model: m, input_mtok: 1, output_mtok: 1, currency: dollars}]",
            "currency must be a three-letter code",
        ),
        ("aliases: [{name: a}]", "aliases[0] (a): model is required"),
        ("discounts: [{percent: 10}]", "discounts[0]: name a provider, a model"),
        ("discounts: [{provider: openai, percent: 120}]", "percent must be between"),
    ],
)
def test_bad_entries_are_named(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(text)

    assert message in str(caught.value)
    assert "prices.yaml" in str(caught.value)


def test_pricer_refuses_a_bad_file_at_start(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text("prices:\n  - {model: m, input_mtok: 1}\n")

    with pytest.raises(ConfigError, match=r"prices\[0\] \(m\): output_mtok"):
        Pricer(path)


def test_an_impossible_date_is_a_config_error(tmp_path: Path) -> None:
    # YAML itself reads 2025-13-45 as a date, and fails.
    path = tmp_path / "prices.yaml"
    path.write_text(
        "prices:\n  - {model: m, input_mtok: 1, output_mtok: 2, from: 2025-13-45}\n"
    )

    with pytest.raises(ConfigError, match=r"prices\.yaml.*month must be in"):
        Pricer(path)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.yaml"):
        Pricer(tmp_path / "missing.yaml")


def test_provider_spellings_become_the_ones_spans_get() -> None:
    found = parse(
        """
        aliases:
          - {name: prod, provider: azure, model: gpt-4o, model_provider: OpenAI}
        prices:
          - {model: m, provider: Vertex_AI, input_mtok: 1, output_mtok: 1}
        discounts:
          - {provider: az.ai.openai, percent: 5}
        """
    )

    (alias,) = found.aliases
    assert (alias.provider, alias.model_provider) == ("azure.ai.openai", "openai")
    assert found.prices[0].provider == "gcp.vertex_ai"
    assert found.discounts[0].provider == "azure.ai.openai"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            """
            prices:
              - {model: m, provider: vllm, input_mtok: 1, output_mtok: 1}
              - {model: M, provider: VLLM, input_mtok: 2, output_mtok: 2}
            """,
            "prices[0] and prices[1] are the same price (model m, provider vllm)",
            id="same-price-twice-last-would-win",
        ),
        pytest.param(
            """
            discounts:
              - {provider: openai, tenant: acme, percent: 10}
              - {provider: OpenAI, tenant: acme, percent: 20}
            """,
            "discounts[0] and discounts[1] are the same discount"
            " (provider openai, tenant acme)",
            id="same-discount-twice-first-would-win",
        ),
        pytest.param(
            """
            aliases:
              - {name: fast, model: gpt-4o-mini}
              - {name: FAST, model: gpt-4o}
            """,
            "aliases[0] and aliases[1] are the same alias (name fast)",
            id="same-alias-twice",
        ),
    ],
)
def test_conflicting_duplicates_are_refused_naming_both(
    text: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(text)

    assert message in str(caught.value)


def test_dated_prices_of_one_model_are_not_duplicates() -> None:
    found = parse(
        """
        prices:
          - {model: m, from: 2025-01-01, input_mtok: 1, output_mtok: 1}
          - {model: m, from: 2026-01-01, input_mtok: 2, output_mtok: 2}
        """
    )

    assert len(found.prices) == 2


def test_alias_to_a_model_nobody_prices_is_refused_at_start(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(
        "aliases:\n  - {name: prod, provider: openai, model: gpt-4o-mnii}\n"
    )

    with pytest.raises(ConfigError, match=r"aliases\[0\] \(prod\): model gpt-4o-mnii"):
        Pricer(path)


def test_alias_to_an_operator_priced_model_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(
        "aliases:\n  - {name: prod, model: my-llm}\n"
        "prices:\n  - {model: my-llm, input_mtok: 1, output_mtok: 1}\n"
    )

    assert Pricer(path).resolve(None, "prod", "default").override
