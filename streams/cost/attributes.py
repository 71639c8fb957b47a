"""The ``cost`` record as OTLP span attributes, so Tempo shows it on the span.

The Tempo sink appends these to the span it re-exports; ``span_proto`` itself
stays as received. Amounts travel as decimal strings: a double would not
keep them exact. Absent values are left out rather than sent empty.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

PREFIX = "llmobs.cost."

# cost record field -> attribute name
ATTRIBUTES: tuple[tuple[str, str], ...] = (
    ("status", PREFIX + "status"),
    ("currency", PREFIX + "currency"),
    ("total_cost", PREFIX + "total"),
    ("input_cost", PREFIX + "input"),
    ("cache_read_cost", PREFIX + "cache_read"),
    ("cache_write_cost", PREFIX + "cache_write"),
    ("output_cost", PREFIX + "output"),
    ("reasoning_cost", PREFIX + "reasoning"),
    ("request_cost", PREFIX + "request"),
    ("reported_cost", PREFIX + "reported"),
    ("catalog", PREFIX + "catalog"),
    ("matched_provider", PREFIX + "matched_provider"),
    ("matched_model", PREFIX + "matched_model"),
    ("match", PREFIX + "match"),
)


def cost_attributes(cost: dict[str, Any] | None) -> list[KeyValue]:
    """``llmobs.cost.*`` attributes of a cost record; empty for None."""
    if not cost:
        return []
    out = []
    for field, name in ATTRIBUTES:
        value = cost.get(field)
        if value is None:
            continue
        text = format(value, "f") if isinstance(value, Decimal) else str(value)
        out.append(KeyValue(key=name, value=AnyValue(string_value=text)))
    return out
