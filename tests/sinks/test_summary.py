"""``llmobs summary``: window parsing, rendering, and a real database."""

from __future__ import annotations

import argparse
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from spanbatches import genai, new_trace_id, span, span_batch

from llmobs.errors import ConfigError
from sinks import rows, schema, summary
from sinks.settings import SummarySettings
from sinks.writer import SpanWriter

# gpt-4o at $2.5 input, $1.25 cache read, $10 output per million tokens, for
# the genai() defaults: 20 uncached + 100 cached input, 38 + 7 reasoning output.
GPT_4O_COST = {
    "status": "priced",
    "currency": "USD",
    "input_cost": Decimal("0.00005"),
    "cache_read_cost": Decimal("0.000125"),
    "cache_write_cost": Decimal("0"),
    "output_cost": Decimal("0.00038"),
    "reasoning_cost": Decimal("0.00007"),
    "total_cost": Decimal("0.000625"),
    "reported_cost": None,
    "catalog": "genai-prices 0.2.3",
    "match": "exact gpt-4o-2024-08-06",
    "matched_model": "gpt-4o",
}
UNKNOWN_MODEL_COST = {
    **{k: None for k in GPT_4O_COST},
    "status": "unknown_model",
    "catalog": "genai-prices 0.2.3",
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("1h", timedelta(hours=1)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("all", None),
    ],
)
def test_parse_since(text: str, expected: timedelta | None) -> None:
    assert summary.parse_since(text) == expected


@pytest.mark.parametrize("text", ["", "1", "h", "1y", "-1h", "1.5h"])
def test_parse_since_rejects_bad_windows_naming_the_key(text: str) -> None:
    with pytest.raises(ConfigError, match="since"):
        summary.parse_since(text)


def test_render_aligns_columns_and_totals() -> None:
    table = summary.render(
        [
            ("openai", "gpt-4o", "chat", 3, 1, 1200, 300, 100, 0, 0, Decimal("0.0123")),
            ("anthropic", "claude", "chat", 1, 0, 5, 6, 0, 2, 0, Decimal("1.5")),
            ("vllm", "llama-internal", "chat", 2, 0, 10, 10, 0, 0, 2, None),
        ]
    )

    lines = table.splitlines()
    assert lines[0].split() == list(summary.HEADINGS)
    assert lines[2].split() == [
        "openai",
        "gpt-4o",
        "chat",
        "3",
        "1",
        "1,200",
        "300",
        "100",
        "0",
        "0",
        "0.012300",
    ]
    assert lines[4].split()[-2:] == ["2", summary.NO_COST]
    assert lines[-1].split() == [
        "total",
        "6",
        "1",
        "1,215",
        "316",
        "100",
        "2",
        "2",
        "1.512300",
    ]
    assert len({len(line) for line in lines[1:] if set(line) <= {"-", " "}}) == 1


async def write_spans(database_url: str, batches: list[dict[str, Any]]) -> None:
    writer = SpanWriter(database_url, connect_timeout_s=10, migrate_on_start=True)
    try:
        await writer.write([row for b in batches for row in rows.batch_rows(b)])
    finally:
        await writer.close()


@pytest.mark.integration
async def test_summary_groups_by_provider_model_and_operation(
    database_url: str,
) -> None:
    tenant = f"summary-{uuid.uuid4().hex[:8]}"
    trace_id = new_trace_id()
    spans = [
        span("a" * 16, genai=genai(response_model=None)),
        span("b" * 16, status_code="ERROR", cost=GPT_4O_COST),
        span(
            "c" * 16,
            genai=genai(
                provider="anthropic",
                response_model="claude-3",
                operation="chat",
                input_tokens=10,
                output_tokens=5,
                cache_read_tokens=None,
                reasoning_tokens=None,
            ),
            cost=UNKNOWN_MODEL_COST,
        ),
        span("d" * 16, genai=None, name="tool"),
    ]
    await write_spans(database_url, [span_batch(trace_id, spans, tenant=tenant)])
    settings = SummarySettings(database_url=database_url, since="all", tenant=tenant)

    text = await summary.summarize(settings)

    lines = {tuple(line.split()[:3]): line.split()[3:] for line in text.splitlines()}
    unpriced = summary.NO_COST
    assert lines[("openai", "gpt-4o", "chat")] == [
        "1",
        "0",
        "120",
        "45",
        "100",
        "7",
        "0",
        unpriced,
    ]
    assert lines[("openai", "gpt-4o-2024-08-06", "chat")] == [
        "1",
        "1",
        "120",
        "45",
        "100",
        "7",
        "0",
        "0.000625",
    ]
    assert lines[("anthropic", "claude-3", "chat")] == [
        "1",
        "0",
        "10",
        "5",
        "0",
        "0",
        "1",
        unpriced,
    ]
    assert lines[("-", "-", "-")] == ["1", "0", "0", "0", "0", "0", "0", unpriced]
    assert text.splitlines()[-1].split() == [
        "total",
        "4",
        "1",
        "250",
        "95",
        "200",
        "14",
        "1",
        "0.000625",
    ]


@pytest.mark.integration
async def test_summary_of_an_unknown_tenant_says_no_spans(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    await schema.migrate(conn)
    await conn.close()
    settings = SummarySettings(database_url=database_url, since="1h", tenant="nobody")

    text = await summary.summarize(settings)

    assert text == "llm_spans, last 1h, tenant nobody: no spans"


@pytest.mark.integration
def test_run_prints_the_table(database_url: str, capsys: Any) -> None:
    parser = argparse.ArgumentParser()
    summary.add_arguments(parser)
    args = parser.parse_args(
        ["--database-url", database_url, "--since", "5m", "--tenant", "nobody"]
    )

    assert summary.run(args) == 0
    assert "no spans" in capsys.readouterr().out
