"""Decoded SpanBatch records (``schemas/span_batch.v*.avsc``) as llm_spans rows.

A row is a tuple in the order of ``STAGING_COLUMNS``: the sink COPYs rows into
a staging table of that shape and inserts them into llm_spans with
``INSERT_FROM_STAGING``, which casts the JSON text columns to jsonb there, so
the JSON strings already in the record are never parsed in Python. Cost
amounts arrive as Decimal and are written to NUMERIC as they are; records
written before spans carried a cost leave the cost columns NULL.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Row = tuple[Any, ...]

# (column, type in the staging table); llm_spans types differ only where the
# insert casts: text -> jsonb, double precision -> numeric.
STAGING_COLUMNS: tuple[tuple[str, str], ...] = (
    ("tenant", "text"),
    ("trace_id", "text"),
    ("span_id", "text"),
    ("parent_span_id", "text"),
    ("name", "text"),
    ("kind", "text"),
    ("service_name", "text"),
    ("start_time", "timestamptz"),
    ("end_time", "timestamptz"),
    ("duration_ms", "double precision"),
    ("status_code", "text"),
    ("status_message", "text"),
    ("operation", "text"),
    ("provider", "text"),
    ("request_model", "text"),
    ("response_model", "text"),
    ("input_tokens", "bigint"),
    ("output_tokens", "bigint"),
    ("cache_read_tokens", "bigint"),
    ("cache_write_tokens", "bigint"),
    ("reasoning_tokens", "bigint"),
    ("total_tokens", "bigint"),
    ("finish_reasons", "text[]"),
    ("time_to_first_token_s", "double precision"),
    ("conversation_id", "text"),
    ("streaming", "boolean"),
    ("error_type", "text"),
    ("reported_cost", "double precision"),
    ("conventions", "text[]"),
    ("normalization_issues", "text[]"),
    ("genai_sources", "text"),
    ("attributes", "text"),
    ("resource_attributes", "text"),
    ("events", "text"),
    ("links_count", "integer"),
    ("received_at", "timestamptz"),
    ("source", "text"),
    ("cost_status", "text"),
    ("cost_currency", "text"),
    ("cost_input", "numeric"),
    ("cost_cache_read", "numeric"),
    ("cost_cache_write", "numeric"),
    ("cost_output", "numeric"),
    ("cost_reasoning", "numeric"),
    ("cost_total", "numeric"),
    ("cost_reported", "numeric"),
    ("cost_catalog", "text"),
    ("cost_match", "text"),
    ("cost_matched_model", "text"),
)
COLUMN_NAMES = tuple(name for name, _ in STAGING_COLUMNS)
START_TIME_INDEX = COLUMN_NAMES.index("start_time")

_CASTS = {
    "reported_cost": "reported_cost::numeric",
    "genai_sources": "genai_sources::jsonb",
    "attributes": "attributes::jsonb",
    "resource_attributes": "resource_attributes::jsonb",
    "events": "events::jsonb",
}

STAGING_TABLE = "llm_spans_staging"

# Reused per connection: created once, emptied by every commit or rollback.
CREATE_STAGING = (
    f"CREATE TEMP TABLE IF NOT EXISTS {STAGING_TABLE} ("
    + ", ".join(f"{name} {kind}" for name, kind in STAGING_COLUMNS)
    + ") ON COMMIT DELETE ROWS"
)

INSERT_FROM_STAGING = (
    f"INSERT INTO llm_spans ({', '.join(COLUMN_NAMES)}) "
    f"SELECT {', '.join(_CASTS.get(name, name) for name in COLUMN_NAMES)} "
    f"FROM {STAGING_TABLE} ON CONFLICT DO NOTHING"
)

_JSON_INDEXES = frozenset(COLUMN_NAMES.index(name) for name in _CASTS) - {
    COLUMN_NAMES.index("reported_cost")
}
# An escaped NUL in JSON text: "\\u0000" after an even run of backslashes.
_JSON_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")
# What stands for a NUL, which PostgreSQL text and jsonb cannot hold.
NUL_STAND_IN = "\ufffd"

_NO_GENAI: tuple[None, ...] = (None,) * 19
_NO_COST: tuple[None, ...] = (None,) * 12


def from_unix_nano(unix_nano: int) -> datetime:
    """UTC time of ``unix_nano``, truncated to PostgreSQL's microseconds."""
    return EPOCH + timedelta(microseconds=unix_nano // 1000)


def batch_rows(batch: dict[str, Any]) -> list[Row]:
    """One llm_spans row per span of a decoded SpanBatch record.

    Raises IndexError when a span names a resource the batch does not hold.
    """
    tenant = batch["tenant"]
    trace_id = batch["trace_id"]
    received_at = from_unix_nano(batch["received_unix_nano"])
    source = batch["source"]
    resources = [
        (r["service_name"], r["resource_attributes_json"]) for r in batch["resources"]
    ]

    rows = []
    for span in batch["spans"]:
        index = span["resource_index"]
        if index < 0:
            raise IndexError(f"resource_index {index} is negative")
        service_name, resource_attributes = resources[index]
        start_ns = span["start_unix_nano"]
        end_ns = span["end_unix_nano"]
        genai = span["genai"]
        rows.append(
            (
                tenant,
                trace_id,
                span["span_id"],
                span["parent_span_id"],
                span["name"],
                span["kind"],
                service_name,
                from_unix_nano(start_ns),
                from_unix_nano(end_ns),
                (end_ns - start_ns) / 1e6,
                span["status_code"],
                span["status_message"],
                *(_NO_GENAI if genai is None else _genai_values(genai)),
                span["attributes_json"],
                resource_attributes,
                span["events_json"],
                span["links_count"],
                received_at,
                source,
                *_cost_values(span.get("cost")),
            )
        )
    return rows


def without_nul(row: Row) -> Row:
    """``row`` with every NUL character replaced, or ``row`` itself if it has none.

    OTLP strings may hold NUL; PostgreSQL refuses it in text and jsonb. The
    original bytes stay in the archive and the trace backend.
    """
    values = list(row)
    for index, value in enumerate(values):
        if isinstance(value, str):
            if index in _JSON_INDEXES:
                value = _JSON_NUL.sub(r"\1\\ufffd", value)
            values[index] = value.replace("\x00", NUL_STAND_IN)
        elif isinstance(value, list):
            values[index] = [
                v.replace("\x00", NUL_STAND_IN) if isinstance(v, str) else v
                for v in value
            ]
    cleaned = tuple(values)
    return row if cleaned == row else cleaned


def row_day(row: Row) -> date:
    """The UTC day of a row's start time, which names its partition."""
    start: datetime = row[START_TIME_INDEX]
    return start.date()


def _cost_values(cost: dict[str, Any] | None) -> tuple[Any, ...]:
    if cost is None:
        return _NO_COST
    return (
        cost["status"],
        cost["currency"],
        cost["input_cost"],
        cost["cache_read_cost"],
        cost["cache_write_cost"],
        cost["output_cost"],
        cost["reasoning_cost"],
        cost["total_cost"],
        cost["reported_cost"],
        cost["catalog"],
        cost["match"],
        cost["matched_model"],
    )


def _genai_values(genai: dict[str, Any]) -> tuple[Any, ...]:
    sources = genai["source_attributes"]
    return (
        genai["operation"],
        genai["provider"],
        genai["request_model"],
        genai["response_model"],
        genai["input_tokens"],
        genai["output_tokens"],
        genai["cache_read_tokens"],
        genai["cache_write_tokens"],
        genai["reasoning_tokens"],
        genai["total_tokens"],
        genai["finish_reasons"],
        genai["time_to_first_token_s"],
        genai["conversation_id"],
        genai["streaming"],
        genai["error_type"],
        genai["reported_cost"],
        genai["conventions"],
        genai["issues"],
        orjson.dumps(sources).decode() if sources else "{}",
    )
