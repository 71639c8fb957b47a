"""Synthetic OTLP trace requests shaped like instrumented LLM apps.

Used by the benchmark and the tests to produce load and fixtures whose
content is known: each trace is an agent span with LLM-call children carrying
OpenTelemetry GenAI attributes.
"""

from __future__ import annotations

import base64
import os
import random
import time
from collections.abc import Iterator

import orjson
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.trace.v1 import trace_pb2

MODELS = (
    ("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18"),
    ("openai", "gpt-4o", "gpt-4o-2024-08-06"),
    ("anthropic", "claude-3-5-sonnet-latest", "claude-3-5-sonnet-20241022"),
)


def kv(key: str, value: str | int | float | bool | list[str]) -> KeyValue:
    """One OTLP attribute from a plain value."""
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    if isinstance(value, list):
        items = [AnyValue(string_value=v) for v in value]
        return KeyValue(key=key, value=AnyValue(array_value=ArrayValue(values=items)))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def new_trace_id() -> bytes:
    return os.urandom(16)


def new_span_id() -> bytes:
    return os.urandom(8)


def llm_trace(
    trace_id: bytes | None = None,
    calls: int = 3,
    service_name: str = "bench-app",
    tenant: str | None = None,
    start_ns: int | None = None,
    error: bool = False,
    rng: random.Random | None = None,
) -> ExportTraceServiceRequest:
    """One trace: an ``invoke_agent`` root span and ``calls`` chat spans."""
    rng = rng or random.Random()
    trace_id = trace_id or new_trace_id()
    start_ns = start_ns or time.time_ns()
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.extend(
        [kv("service.name", service_name), kv("deployment.environment", "bench")]
    )
    if tenant:
        resource_spans.resource.attributes.append(kv("tenant.id", tenant))
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = "llmobs.synthetic"
    scope_spans.scope.version = "1"

    root = scope_spans.spans.add()
    root.trace_id = trace_id
    root.span_id = new_span_id()
    root.name = "invoke_agent planner"
    root.kind = trace_pb2.Span.SPAN_KIND_INTERNAL
    root.start_time_unix_nano = start_ns
    root.attributes.extend(
        [
            kv("gen_ai.operation.name", "invoke_agent"),
            kv("gen_ai.agent.name", "planner"),
        ]
    )
    cursor_ns = start_ns + 1_000_000
    for index in range(calls):
        provider, model, response_model = MODELS[rng.randrange(len(MODELS))]
        input_tokens = rng.randint(50, 4000)
        output_tokens = rng.randint(10, 800)
        duration_ns = rng.randint(200, 3000) * 1_000_000
        span = scope_spans.spans.add()
        span.trace_id = trace_id
        span.span_id = new_span_id()
        span.parent_span_id = root.span_id
        span.name = f"chat {model}"
        span.kind = trace_pb2.Span.SPAN_KIND_CLIENT
        span.start_time_unix_nano = cursor_ns
        span.end_time_unix_nano = cursor_ns + duration_ns
        span.attributes.extend(
            [
                kv("gen_ai.operation.name", "chat"),
                kv("gen_ai.provider.name", provider),
                kv("gen_ai.request.model", model),
                kv("gen_ai.response.model", response_model),
                kv("gen_ai.usage.input_tokens", input_tokens),
                kv("gen_ai.usage.output_tokens", output_tokens),
                kv("gen_ai.usage.cache_read.input_tokens", input_tokens // 4),
                kv("gen_ai.response.finish_reasons", ["stop"]),
                kv("gen_ai.response.id", f"resp-{trace_id.hex()[:8]}-{index}"),
                kv("server.address", "api.example.test"),
            ]
        )
        event = span.events.add()
        event.name = "gen_ai.content.completion"
        event.time_unix_nano = span.end_time_unix_nano
        if error and index == calls - 1:
            span.status.code = trace_pb2.Status.STATUS_CODE_ERROR
            span.status.message = "rate limited"
            span.attributes.append(kv("error.type", "429"))
        cursor_ns = span.end_time_unix_nano + 1_000_000
    root.end_time_unix_nano = cursor_ns
    return request


def llm_traces(
    count: int, calls: int = 3, seed: int = 7
) -> Iterator[ExportTraceServiceRequest]:
    """``count`` independent traces, reproducible for a given seed."""
    rng = random.Random(seed)
    for _ in range(count):
        yield llm_trace(calls=calls, rng=rng)


def otlp_json(request: ExportTraceServiceRequest) -> bytes:
    """The request in the OTLP/JSON encoding: ids as hex, not base64."""
    body = json_format.MessageToDict(request)
    for resource_spans in body.get("resourceSpans", ()):
        for scope_spans in resource_spans.get("scopeSpans", ()):
            for span in scope_spans.get("spans", ()):
                _hex_ids(span)
                for link in span.get("links", ()):
                    _hex_ids(link)
    return orjson.dumps(body)


def _hex_ids(item: dict[str, str]) -> None:
    for key in ("traceId", "spanId", "parentSpanId"):
        if item.get(key):
            item[key] = base64.b64decode(item[key]).hex()


def merge(requests: list[ExportTraceServiceRequest]) -> ExportTraceServiceRequest:
    """Several requests as one, the way an unsplit Collector batch looks."""
    merged = ExportTraceServiceRequest()
    for request in requests:
        merged.resource_spans.extend(request.resource_spans)
    return merged
