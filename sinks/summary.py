"""``llmobs summary``: what llm_spans holds, by provider, model and operation."""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from datetime import timedelta
from decimal import Decimal
from typing import Any

from llmobs import settings as config
from llmobs.display import cell
from llmobs.errors import ConfigError
from sinks.settings import SummarySettings

_SINCE = re.compile(r"^\s*(?P<count>\d+)\s*(?P<unit>[smhdw])\s*$")
_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

QUERY = """
SELECT coalesce(provider, '-')                          AS provider,
       coalesce(response_model, request_model, '-')     AS model,
       coalesce(operation, '-')                         AS operation,
       count(*)                                         AS spans,
       count(*) FILTER (WHERE status_code = 'ERROR'
                           OR error_type IS NOT NULL)   AS errors,
       coalesce(sum(input_tokens), 0)                   AS input_tokens,
       coalesce(sum(output_tokens), 0)                  AS output_tokens,
       coalesce(sum(cache_read_tokens), 0)              AS cached_tokens,
       coalesce(sum(reasoning_tokens), 0)               AS reasoning_tokens,
       count(*) FILTER (WHERE cost_status = 'unknown_model')
                                                        AS unpriced,
       sum(cost_total)                                  AS cost
FROM llm_spans
WHERE ($1::interval IS NULL OR start_time >= now() - $1::interval)
  AND ($2::text IS NULL OR tenant = $2)
GROUP BY 1, 2, 3
ORDER BY spans DESC, 1, 2, 3
"""

COUNT_QUERY = """
SELECT count(*) FROM llm_spans
WHERE ($1::interval IS NULL OR start_time >= now() - $1::interval)
  AND ($2::text IS NULL OR tenant = $2)
"""

HEADINGS = (
    "provider",
    "model",
    "operation",
    "spans",
    "errors",
    "input",
    "output",
    "cached",
    "reasoning",
    "unpriced",
    "cost",
)
# Decimal places shown for cost (the column holds twelve).
COST_PLACES = 6
# Shown for a cost that no span of the row has (never priced as zero).
NO_COST = "-"


def parse_since(text: str) -> timedelta | None:
    """``15m``, ``1h``, ``7d`` as a timedelta; ``all`` as None (no limit)."""
    if text.strip().lower() == "all":
        return None
    match = _SINCE.match(text)
    if match is None:
        raise ConfigError(
            f"setting since: expected a number and a unit s/m/h/d/w or 'all', "
            f"got {text!r}"
        )
    return timedelta(seconds=int(match["count"]) * _UNITS_S[match["unit"]])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    config.add_flags(parser, SummarySettings)


def run(args: argparse.Namespace) -> int:
    import asyncio

    settings = config.load(SummarySettings, args)
    print(asyncio.run(summarize(settings)))
    return 0


async def summarize(settings: SummarySettings) -> str:
    """The summary table as text, read from the database in ``settings``."""
    import asyncpg

    from llmobs.errors import StageError
    from sinks.settings import masked_url

    since = parse_since(settings.since)
    target = masked_url(settings.database_url)
    try:
        conn = await asyncpg.connect(settings.database_url, timeout=10)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise StageError(f"cannot connect to {target}: {exc}") from exc
    try:
        if not await conn.fetchval("SELECT to_regclass('llm_spans') IS NOT NULL"):
            return "no llm_spans table yet; run `llmobs migrate`"
        if settings.wait_s > 0:
            await _wait_until_settled(conn, since, settings)
        records = await conn.fetch(QUERY, since, settings.tenant)
    finally:
        await conn.close()

    scope = f"last {settings.since}" if since is not None else "all time"
    tenant = f", tenant {settings.tenant}" if settings.tenant else ""
    title = f"llm_spans, {scope}{tenant}"
    if not records:
        return f"{title}: no spans"
    return f"{title}\n{render([tuple(r.values()) for r in records])}"


async def _wait_until_settled(conn: Any, since: Any, settings: SummarySettings) -> None:
    """Poll the span count until it is non-zero and steady for ``settle_s``.

    Raises StageError when no span arrived at all within ``wait_s``: a demo
    or a smoke check that waits for spans must fail when none come.
    """
    import asyncio
    import sys
    import time

    from llmobs.errors import StageError

    deadline = time.monotonic() + settings.wait_s
    last_count, last_change = -1, time.monotonic()
    while time.monotonic() < deadline:
        count = await conn.fetchval(COUNT_QUERY, since, settings.tenant)
        now = time.monotonic()
        if count != last_count:
            last_count, last_change = count, now
            print(f"{count} spans so far...", file=sys.stderr, flush=True)
        elif count > 0 and now - last_change >= settings.settle_s:
            return
        await asyncio.sleep(0.5)
    if last_count <= 0:
        raise StageError(f"no spans arrived within {settings.wait_s:g}s")


def render(rows: Sequence[tuple[Any, ...]]) -> str:
    """A plain-text table with a total line; numbers right-aligned."""
    totals: tuple[Any, ...] = (
        "total",
        "",
        "",
        *(sum(r[i] for r in rows) for i in range(3, 10)),
        _total_cost([r[10] for r in rows]),
    )
    cells = [HEADINGS, *(_cells(r) for r in rows), _cells(totals)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(HEADINGS))]

    def line(row: Sequence[str]) -> str:
        left = [row[i].ljust(widths[i]) for i in range(3)]
        right = [row[i].rjust(widths[i]) for i in range(3, len(row))]
        return "  ".join(left + right).rstrip()

    rule = "  ".join("-" * w for w in widths)
    body = [line(c) for c in cells[1:-1]]
    return "\n".join([line(cells[0]), rule, *body, rule, line(cells[-1])])


def _total_cost(costs: Sequence[Any]) -> Decimal | None:
    priced = [Decimal(c) for c in costs if c is not None]
    return sum(priced, Decimal(0)) if priced else None


def _cells(row: tuple[Any, ...]) -> tuple[str, ...]:
    text = [cell(v) for v in row[:3]]
    numbers = [f"{int(v):,}" for v in row[3:10]]
    cost = NO_COST if row[10] is None else f"{Decimal(row[10]):,.{COST_PLACES}f}"
    return (*text, *numbers, cost)
