"""``llmobs price``: price one model call by hand, or list models seen unpriced.

``llmobs price --provider openai --model gpt-4o --input-tokens 1200
--output-tokens 300`` prints the cost the pipeline would record and the
price entry behind it. ``llmobs price --unknown`` reads llm_spans and lists
the (provider, model) pairs whose spans had no price, most frequent first.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from llmobs import settings as config
from llmobs.display import cell
from llmobs.errors import ConfigError
from llmobs.settings import setting, settings_class
from sinks.settings import DEFAULT_DATABASE_URL
from streams.parsers import canonical_provider

UNKNOWN_QUERY = """
SELECT coalesce(provider, '-')                       AS provider,
       coalesce(response_model, request_model, '-')  AS model,
       count(*)                                      AS spans,
       max(start_time)                               AS last_seen,
       max(cost_match)                               AS reason
FROM llm_spans
WHERE cost_status = 'unknown_model'
  AND ($1::interval IS NULL OR start_time >= now() - $1::interval)
GROUP BY 1, 2
ORDER BY spans DESC, 1, 2
LIMIT $2
"""

_AMOUNTS = (
    ("input", "input_cost"),
    ("cache read", "cache_read_cost"),
    ("cache write", "cache_write_cost"),
    ("output", "output_cost"),
    ("reasoning", "reasoning_cost"),
    ("request fee", "request_cost"),
    ("total", "total_cost"),
)


@settings_class
class PriceSettings:
    """``llmobs price``: where prices and, for --unknown, spans come from."""

    config_section = "price"

    prices_file: str | None = setting(
        None, "operator prices YAML: aliases, private prices, discounts"
    )
    database_url: str = setting(
        DEFAULT_DATABASE_URL, "PostgreSQL connection URL (for --unknown)", secret=True
    )
    since: str = setting("7d", "with --unknown: time window, e.g. 1h, 7d, or 'all'")
    limit: int = setting(100, "with --unknown: most models listed")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    config.add_flags(parser, PriceSettings)
    parser.add_argument(
        "--unknown",
        action="store_true",
        help="list models seen in llm_spans without a price",
    )
    parser.add_argument("--provider", help="provider, e.g. openai, aws.bedrock")
    parser.add_argument("--model", help="model name as spans carry it")
    parser.add_argument("--operation", default="chat", help="e.g. chat, embeddings")
    parser.add_argument("--tenant", default="default", help="tenant to price for")
    parser.add_argument(
        "--at", help="price as of this UTC date or time (ISO 8601; default now)"
    )
    for name, help_text in (
        ("input-tokens", "input tokens, including cache reads and writes"),
        ("output-tokens", "output tokens, including reasoning"),
        ("cache-read-tokens", "input tokens read from the cache"),
        ("cache-write-tokens", "input tokens written to the cache"),
        ("reasoning-tokens", "output tokens spent reasoning"),
    ):
        parser.add_argument(f"--{name}", type=int, default=None, help=help_text)


def run(args: argparse.Namespace) -> int:
    settings = config.load(PriceSettings, args)
    if args.unknown:
        import asyncio

        print(asyncio.run(unknown_models(settings)))
        return 0
    if not args.model:
        raise ConfigError("--model is required (or use --unknown)")

    from pathlib import Path

    from streams.cost import Pricer

    pricer = Pricer(Path(settings.prices_file) if settings.prices_file else None)
    print(explain(pricer, args))
    return 0


def explain(pricer: Any, args: argparse.Namespace) -> str:
    """The cost record for the call in ``args``, with the entry that priced it."""
    # Spelt as the normalizer spells a span's provider, so that the answer
    # is the one the pipeline gives (gemini is gcp.gemini).
    provider = canonical_provider(args.provider) if args.provider else None
    start_ns = _start_ns(args.at)
    genai = {
        "operation": args.operation,
        "provider": provider,
        "request_model": args.model,
        "response_model": None,
        "input_tokens": args.input_tokens,
        "output_tokens": args.output_tokens,
        "cache_read_tokens": args.cache_read_tokens,
        "cache_write_tokens": args.cache_write_tokens,
        "reasoning_tokens": args.reasoning_tokens,
        "issues": [],
        "reported_cost": None,
    }
    lines = [f"{provider or '(no provider)'} {args.model}, tenant {args.tenant}"]
    found = pricer.rates_for(provider, args.model, args.tenant, start_ns)
    if found is not None:
        rates, source, matched_provider, matched_model, match = found
        lines.append(f"entry       {matched_provider}/{matched_model} ({source})")
        lines.append(f"match       {match}")
        lines.append(f"prices      {_per_mtok(rates)}")

    cost = pricer.price(genai, start_ns, args.tenant)
    lines.append(f"status      {cost['status']}")
    if cost["status"] != "priced":
        lines.append(f"reason      {cost['match']}")
        return "\n".join(lines)
    for label, field in _AMOUNTS:
        lines.append(f"{label:<11} {cost[field]:>20f} {cost['currency']}")
    return "\n".join(lines)


async def unknown_models(settings: PriceSettings) -> str:
    """The models of llm_spans that had no price, as a table."""
    import asyncpg

    from llmobs.errors import StageError
    from sinks.settings import masked_url
    from sinks.summary import parse_since

    since = parse_since(settings.since)
    try:
        conn = await asyncpg.connect(settings.database_url, timeout=10)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        target = masked_url(settings.database_url)
        raise StageError(f"cannot connect to {target}: {exc}") from exc
    try:
        records = await conn.fetch(UNKNOWN_QUERY, since, settings.limit)
    except asyncpg.UndefinedColumnError:
        return "llm_spans has no cost columns yet; run `llmobs migrate`"
    except asyncpg.UndefinedTableError:
        return "no llm_spans table yet; run `llmobs migrate`"
    finally:
        await conn.close()

    if not records:
        scope = "ever" if since is None else f"in the last {settings.since}"
        return f"no unpriced models {scope}"
    return unknown_table(records)


def unknown_table(records: Sequence[Mapping[str, Any]]) -> str:
    """Rows of UNKNOWN_QUERY as a table, each with the reason it had no price."""
    rows = [
        (
            cell(r["provider"]),
            cell(r["model"]),
            f"{r['spans']:,}",
            f"{r['last_seen']:%Y-%m-%d %H:%M}",
            r["reason"] or "-",
        )
        for r in records
    ]
    headings = ("provider", "model", "spans", "last seen (UTC)", "reason")
    widths = [max(len(row[i]) for row in [headings, *rows]) for i in range(5)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headings, widths, strict=True))]
    for row in rows:
        lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
    lines.append("add a price or an alias for these in the prices file (README, Cost)")
    return "\n".join(line.rstrip() for line in lines)


def _per_mtok(rates: Any) -> str:
    parts = []
    for label, rate in (
        ("input", rates.input),
        ("cache read", rates.cache_read),
        ("cache write", rates.cache_write),
        ("output", rates.output),
        ("reasoning", rates.reasoning),
    ):
        if rate is None:
            continue
        tiers = " (+tiers)" if rate.tiers else ""
        parts.append(f"{label} {_plain(rate.base_mtok)}{tiers}")
    text = f"{', '.join(parts)} {rates.currency} per million tokens"
    if rates.request is not None:
        text += f", {_plain(rates.request)} {rates.currency} per request"
    return text


def _plain(value: Decimal) -> str:
    return format(value.normalize(), "f")


def _start_ns(at: str | None) -> int:
    if not at:
        return time.time_ns()
    try:
        when = datetime.fromisoformat(at)
    except ValueError:
        raise ConfigError(
            f"--at: expected an ISO 8601 date or time, got {at!r}"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp()) * 1_000_000_000
