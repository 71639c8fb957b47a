"""``llmobs price``: one call priced by hand, and unpriced models listed."""

from __future__ import annotations

import argparse
import time
import uuid

import pytest

from streams.conventions import GENAI_FIELDS
from streams.cost import cli

NOW_NS = time.time_ns()


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    assert cli.run(parser.parse_args(argv)) == 0
    return capsys.readouterr().out


def test_prices_a_call_and_explains_the_entry(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = run(
        [
            "--provider", "openai", "--model", "gpt-4o-2024-08-06",
            "--input-tokens", "1000", "--cache-read-tokens", "400",
            "--output-tokens", "500", "--at", "2025-06-01",
        ],
        capsys,
    )  # fmt: skip

    # gpt-4o: 600 x 2.5 + 400 x 1.25 + 500 x 10 per million tokens
    assert "entry       openai/gpt-4o (genai-prices 0.2.3)" in out
    assert "match       exact gpt-4o-2024-08-06" in out
    assert "input 2.5, cache read 1.25, output 10 USD per million tokens" in out
    assert "total             0.007000000000 USD" in out


def test_unknown_model_says_why(capsys: pytest.CaptureFixture[str]) -> None:
    out = run(
        ["--provider", "vllm", "--model", "my-llm", "--input-tokens", "5",
         "--output-tokens", "5"],
        capsys,
    )  # fmt: skip

    assert "status      unknown_model" in out
    assert "no price for my-llm (provider vllm)" in out


@pytest.mark.parametrize("spelling", ["gemini", "vertex_ai", "Google", "GCP.Gemini"])
def test_provider_spelt_as_spans_spell_it_is_priced(
    spelling: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = run(
        ["--provider", spelling, "--model", "gemini-2.0-flash",
         "--input-tokens", "10000", "--output-tokens", "1000",
         "--at", "2025-06-01"],
        capsys,
    )  # fmt: skip

    # gemini-2.0-flash: 10000 x 0.1 + 1000 x 0.4 per million tokens
    assert "status      priced" in out
    assert "total             0.001400000000 USD" in out


def test_azure_spelling_of_openlit_is_priced(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = run(
        ["--provider", "az.ai.openai", "--model", "gpt-4o",
         "--input-tokens", "1000", "--output-tokens", "1000",
         "--at", "2025-06-01"],
        capsys,
    )  # fmt: skip

    # Azure falls back to OpenAI's gpt-4o: 1000 x 2.5 + 1000 x 10 per million
    assert "total             0.012500000000 USD" in out


def test_unknown_models_table_shows_the_reason() -> None:
    from datetime import UTC, datetime

    records = [
        {
            "provider": "mistral_ai",
            "model": "mistral-large-2402",
            "spans": 1200,
            "last_seen": datetime(2025, 6, 1, 12, 30, tzinfo=UTC),
            "reason": "no price for mistral-large-2402 (provider mistral_ai)",
        }
    ]

    text = cli.unknown_table(records)

    header, row = text.splitlines()[:2]
    assert header.split()[-1] == "reason"
    assert row.endswith("no price for mistral-large-2402 (provider mistral_ai)")
    assert "1,200" in row


@pytest.mark.integration
async def test_unknown_lists_models_seen_without_a_price(database_url: str) -> None:
    from sinks import rows
    from sinks.writer import SpanWriter

    model = f"mystery-{uuid.uuid4().hex[:6]}"
    unknown = {
        "status": "unknown_model", "currency": None, "input_cost": None,
        "cache_read_cost": None, "cache_write_cost": None, "output_cost": None,
        "reasoning_cost": None, "total_cost": None, "reported_cost": None,
        "catalog": "genai-prices 0.2.3", "matched_provider": None,
        "matched_model": None, "match": f"no price for {model}",
    }  # fmt: skip
    genai = dict.fromkeys(GENAI_FIELDS)
    genai.update(
        provider="vllm", response_model=model, operation="chat",
        finish_reasons=[], conventions=[], issues=[], source_attributes={},
    )  # fmt: skip
    batch = {
        "tenant": "cli-test", "trace_id": uuid.uuid4().hex,
        "received_unix_nano": NOW_NS, "source": "otlp_spans[0] 1",
        "resources": [{"service_name": "svc", "resource_attributes_json": "{}"}],
        "spans": [
            {
                "resource_index": 0, "span_id": f"{i:016x}", "parent_span_id": None,
                "name": "chat", "kind": "SPAN_KIND_CLIENT",
                "start_unix_nano": NOW_NS, "end_unix_nano": NOW_NS + 10**9,
                "status_code": "OK", "status_message": "", "attributes_json": "{}",
                "events_json": "[]", "links_count": 0, "genai": genai,
                "cost": unknown,
            }
            for i in range(3)
        ],
    }  # fmt: skip
    writer = SpanWriter(database_url, connect_timeout_s=10, migrate_on_start=True)
    try:
        await writer.write(rows.batch_rows(batch))
    finally:
        await writer.close()
    settings = cli.PriceSettings(database_url=database_url, since="all")

    text = await cli.unknown_models(settings)

    line = next(line for line in text.splitlines() if model in line)
    assert line.split()[:3] == ["vllm", model, "3"]
