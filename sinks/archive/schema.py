"""The archive's Parquet schema, defined once, and SpanBatch spans as rows.

One row per span. The schema is a contract (README "Archive layout"):
columns are only ever added at the end, never renamed, retyped or removed.
The ``*_proto`` columns keep the exact OTLP bytes, so the archive replays
into Kafka losslessly; the typed columns are for queries.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pyarrow as pa

SCHEMA_VERSION = "1"

_TS = pa.timestamp("ns", tz="UTC")
_STRINGS = pa.list_(pa.string())
# Money stays exact, as in the cost record and in PostgreSQL's NUMERIC(38,12).
MONEY = pa.decimal128(38, 12)

SCHEMA = pa.schema(
    [
        pa.field("tenant", pa.string(), nullable=False),
        pa.field("trace_id", pa.string(), nullable=False),
        pa.field("span_id", pa.string(), nullable=False),
        pa.field("parent_span_id", pa.string()),
        pa.field("name", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("service_name", pa.string(), nullable=False),
        pa.field("start_time", _TS, nullable=False),
        pa.field("end_time", _TS, nullable=False),
        pa.field("duration_ms", pa.float64(), nullable=False),
        pa.field("status_code", pa.string(), nullable=False),
        pa.field("status_message", pa.string(), nullable=False),
        pa.field("operation", pa.string()),
        pa.field("provider", pa.string()),
        pa.field("request_model", pa.string()),
        pa.field("response_model", pa.string()),
        pa.field("input_tokens", pa.int64()),
        pa.field("output_tokens", pa.int64()),
        pa.field("cache_read_tokens", pa.int64()),
        pa.field("cache_write_tokens", pa.int64()),
        pa.field("reasoning_tokens", pa.int64()),
        pa.field("total_tokens", pa.int64()),
        pa.field("finish_reasons", _STRINGS),
        pa.field("time_to_first_token_s", pa.float64()),
        pa.field("conversation_id", pa.string()),
        pa.field("streaming", pa.bool_()),
        pa.field("error_type", pa.string()),
        pa.field("reported_cost", pa.float64()),
        pa.field("conventions", _STRINGS),
        pa.field("normalization_issues", _STRINGS),
        pa.field("genai_sources_json", pa.string()),
        pa.field("has_genai", pa.bool_(), nullable=False),
        pa.field("cost_status", pa.string()),
        pa.field("cost_currency", pa.string()),
        pa.field("cost_total", MONEY),
        pa.field("cost_json", pa.string()),
        pa.field("attributes_json", pa.string(), nullable=False),
        pa.field("events_json", pa.string(), nullable=False),
        pa.field("links_count", pa.int32(), nullable=False),
        pa.field("resource_attributes_json", pa.string(), nullable=False),
        pa.field("span_proto", pa.binary(), nullable=False),
        pa.field("resource_proto", pa.binary(), nullable=False),
        pa.field("resource_schema_url", pa.string(), nullable=False),
        pa.field("scope_proto", pa.binary(), nullable=False),
        pa.field("scope_schema_url", pa.string(), nullable=False),
        pa.field("received_time", _TS, nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("kafka_topic", pa.string(), nullable=False),
        pa.field("kafka_partition", pa.int32(), nullable=False),
        pa.field("kafka_offset", pa.int64(), nullable=False),
    ],
    metadata={"llmobs.archive.schema_version": SCHEMA_VERSION},
)
COLUMNS = tuple(SCHEMA.names)

_GENAI_COLUMNS = (
    "operation",
    "provider",
    "request_model",
    "response_model",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "total_tokens",
    "time_to_first_token_s",
    "conversation_id",
    "streaming",
    "error_type",
    "reported_cost",
)


class Rows:
    """Column-wise buffer of spans for one Parquet file."""

    def __init__(self) -> None:
        self.columns: dict[str, list[Any]] = {name: [] for name in COLUMNS}
        self.count = 0
        self.bytes = 0

    def add(
        self,
        record: dict[str, Any],
        span: dict[str, Any],
        where: tuple[str, int, int],
    ) -> None:
        """Append one span of ``record``, read at Kafka position ``where``."""
        c = self.columns
        rs = record["resources"][span["resource_index"]]
        start_ns = span["start_unix_nano"]
        end_ns = span["end_unix_nano"]
        c["tenant"].append(record["tenant"])
        c["trace_id"].append(record["trace_id"])
        c["span_id"].append(span["span_id"])
        c["parent_span_id"].append(span["parent_span_id"])
        c["name"].append(span["name"])
        c["kind"].append(span["kind"])
        c["service_name"].append(rs.get("service_name", ""))
        c["start_time"].append(start_ns)
        c["end_time"].append(end_ns)
        c["duration_ms"].append((end_ns - start_ns) / 1e6)
        c["status_code"].append(span["status_code"])
        c["status_message"].append(span.get("status_message", ""))

        genai = span.get("genai")
        for name in _GENAI_COLUMNS:
            c[name].append(genai.get(name) if genai else None)
        c["finish_reasons"].append(genai["finish_reasons"] if genai else None)
        c["conventions"].append(genai["conventions"] if genai else None)
        c["normalization_issues"].append(genai["issues"] if genai else None)
        c["genai_sources_json"].append(
            orjson.dumps(genai["source_attributes"]).decode() if genai else None
        )
        c["has_genai"].append(genai is not None)

        cost = span.get("cost")
        c["cost_status"].append(cost["status"] if cost else None)
        c["cost_currency"].append(cost.get("currency") if cost else None)
        c["cost_total"].append(cost.get("total_cost") if cost else None)
        c["cost_json"].append(
            orjson.dumps(cost, default=_json_default).decode() if cost else None
        )

        c["attributes_json"].append(span["attributes_json"])
        c["events_json"].append(span.get("events_json", "[]"))
        c["links_count"].append(span.get("links_count", 0))
        c["resource_attributes_json"].append(rs.get("resource_attributes_json", "{}"))
        c["span_proto"].append(span["span_proto"])
        c["resource_proto"].append(rs["resource_proto"])
        c["resource_schema_url"].append(rs.get("resource_schema_url", ""))
        c["scope_proto"].append(rs["scope_proto"])
        c["scope_schema_url"].append(rs.get("scope_schema_url", ""))
        c["received_time"].append(record["received_unix_nano"])
        c["source"].append(record["source"])
        c["kafka_topic"].append(where[0])
        c["kafka_partition"].append(where[1])
        c["kafka_offset"].append(where[2])
        self.count += 1
        # Resource and scope are shared by a trace's spans; count them once.
        self.bytes += 200 + len(span["span_proto"]) + len(span["attributes_json"])

    def table(self) -> pa.Table:
        return pa.Table.from_pydict(self.columns, schema=SCHEMA)


def start_hour(span: dict[str, Any]) -> datetime:
    """The UTC hour a span started in: its Hive partition."""
    start_s = span["start_unix_nano"] // 1_000_000_000
    return datetime.fromtimestamp(start_s - start_s % 3600, UTC)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        # Positional, as the README promises: str() would write 0E-12.
        return format(value, "f")
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(type(value).__name__)
