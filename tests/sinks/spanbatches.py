"""Hand-made SpanBatch records and an in-process sink runner for the tests."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import schemas
from sinks.postgres import PostgresSpanSink
from sinks.settings import SinkSettings

# 2025-01-15T10:00:00Z, inside a partition the tests share.
BASE_NS = 1_736_935_200_000_000_000


def new_trace_id() -> str:
    return uuid.uuid4().hex


def genai(**overrides: Any) -> dict[str, Any]:
    """A GenAI record with every field set, overridable by name."""
    record: dict[str, Any] = {
        "operation": "chat",
        "provider": "openai",
        "request_model": "gpt-4o",
        "response_model": "gpt-4o-2024-08-06",
        "input_tokens": 120,
        "output_tokens": 45,
        "cache_read_tokens": 100,
        "cache_write_tokens": 0,
        "reasoning_tokens": 7,
        "total_tokens": 165,
        "finish_reasons": ["stop"],
        "time_to_first_token_s": 0.25,
        "conversation_id": "conv-1",
        "streaming": True,
        "error_type": None,
        "reported_cost": 0.0012,
        "conventions": ["otel_genai", "openllmetry"],
        "source_attributes": {"input_tokens": "gen_ai.usage.input_tokens"},
        "issues": ["tokens_as_string"],
    }
    record.update(overrides)
    return record


def span(span_id: str, **overrides: Any) -> dict[str, Any]:
    """A span of the SpanBatch schema, overridable by field name."""
    record: dict[str, Any] = {
        "resource_index": 0,
        "span_proto": b"",
        "span_id": span_id,
        "parent_span_id": None,
        "name": "chat gpt-4o",
        "kind": "SPAN_KIND_CLIENT",
        "start_unix_nano": BASE_NS,
        "end_unix_nano": BASE_NS + 1_500_000_000,
        "status_code": "OK",
        "status_message": "",
        "attributes_json": '{"gen_ai.system": "openai", "n": 2}',
        "events_json": '[{"name": "first_token", "time_unix_nano": 1}]',
        "links_count": 0,
        "genai": genai(),
    }
    record.update(overrides)
    return record


def span_batch(
    trace_id: str, spans: list[dict[str, Any]], tenant: str = "acme"
) -> dict[str, Any]:
    """A SpanBatch record holding ``spans`` of one resource."""
    return {
        "tenant": tenant,
        "trace_id": trace_id,
        "received_unix_nano": BASE_NS + 2_000_000_000,
        "source": "otlp_spans[0] 42",
        "resources": [
            {
                "resource_proto": b"",
                "resource_schema_url": "",
                "scope_proto": b"",
                "scope_schema_url": "",
                "service_name": "checkout",
                "resource_attributes_json": '{"service.name": "checkout"}',
            }
        ],
        "spans": spans,
    }


def encode(batch: dict[str, Any]) -> bytes:
    return schemas.codec(schemas.SPAN_BATCH).encode(batch)


async def run_sink(settings: SinkSettings, timeout_s: float = 60) -> PostgresSpanSink:
    """Run a sink in-process until it goes idle; returns it for its counters."""
    sink = PostgresSpanSink(settings)
    await asyncio.wait_for(sink.run(asyncio.Event()), timeout_s)
    return sink
