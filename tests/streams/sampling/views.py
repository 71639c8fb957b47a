"""Traces built span by span for the policy tests."""

from __future__ import annotations

from typing import Any

import orjson

from streams.sampling.trace import TraceView

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


def span(
    span_id: str = "s1",
    parent: str | None = "root",
    start_ms: int = 0,
    end_ms: int = 10,
    status: str = "UNSET",
    attributes: dict[str, Any] | None = None,
    genai: dict[str, Any] | None = None,
    cost: dict[str, Any] | None = None,
) -> dict[str, Any]:
    out = {
        "resource_index": 0,
        "span_id": span_id,
        "parent_span_id": parent,
        "start_unix_nano": start_ms * 1_000_000,
        "end_unix_nano": end_ms * 1_000_000,
        "status_code": status,
        "attributes_json": orjson.dumps(attributes or {}).decode(),
        "genai": genai,
    }
    if cost is not None:
        out["cost"] = cost
    return out


def trace(
    *spans: dict[str, Any],
    resource: dict[str, Any] | None = None,
    trace_id: str = TRACE_ID,
) -> TraceView:
    resources = [{"resource_attributes_json": orjson.dumps(resource or {}).decode()}]
    return TraceView(trace_id, [{"resources": resources, "spans": list(spans)}])
