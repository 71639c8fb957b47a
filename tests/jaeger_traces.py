"""Reading traces back from the local Jaeger, the stand-in for Tempo."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry.proto.trace.v1.trace_pb2 import Span, TracesData

JAEGER_QUERY = "http://127.0.0.1:16686"
JAEGER_OTLP = "http://127.0.0.1:24318"


def require_jaeger() -> str:
    """The OTLP/HTTP endpoint of the running Jaeger, or fail the test."""
    try:
        urllib.request.urlopen(f"{JAEGER_QUERY}/api/services", timeout=5).read()
    except OSError as exc:
        pytest.fail(f"Jaeger is not running ({exc}); run infra/jaeger.sh start")
    return JAEGER_OTLP


def fetch_trace(
    trace_id: str, expected_spans: int, timeout_s: float = 30
) -> TracesData:
    """The trace as Jaeger stores it, once it holds ``expected_spans``."""
    deadline = time.monotonic() + timeout_s
    found = TracesData()
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(
                f"{JAEGER_QUERY}/api/v3/traces/{trace_id}", timeout=5
            ) as response:
                found = _parse(json.loads(response.read())["result"])
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise
        if (
            sum(len(ss.spans) for rs in found.resource_spans for ss in rs.scope_spans)
            >= expected_spans
        ):
            return found
        time.sleep(0.3)
    return found


def _parse(doc: dict[str, Any]) -> TracesData:
    # OTLP/JSON writes ids as hex; protobuf's JSON parser expects base64.
    for rs in doc.get("resourceSpans", ()):
        for ss in rs.get("scopeSpans", ()):
            for span in ss.get("spans", ()):
                _b64(span)
                for link in span.get("links", ()):
                    _b64(link)
    return json_format.ParseDict(doc, TracesData(), ignore_unknown_fields=True)


def _b64(item: dict[str, Any]) -> None:
    for key in ("traceId", "spanId", "parentSpanId"):
        if item.get(key):
            item[key] = base64.b64encode(bytes.fromhex(item[key])).decode()


def canonical(span: Span) -> Span:
    """The span with attribute order removed (Jaeger sorts by key)."""
    copy = Span()
    copy.CopyFrom(span)
    for holder in [copy, *copy.events, *copy.links]:
        ordered = sorted(holder.attributes, key=lambda kv: kv.key)
        del holder.attributes[:]
        holder.attributes.extend(ordered)
    copy.ClearField("flags")
    for link in copy.links:
        link.ClearField("flags")
    return copy
