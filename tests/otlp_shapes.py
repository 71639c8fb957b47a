"""OTLP requests of awkward shapes that real producers can send."""

from __future__ import annotations

import time

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

from llmobs import synthetic

# The length of a ResourceSpans whose length byte reads as "{".
BRACE = ord("{")


def request_opening_with_brace() -> ExportTraceServiceRequest:
    """A valid one-span request whose serialized form starts b"\\n{".

    Its first ResourceSpans is 123 bytes long, so the length byte after
    field 1's tag (0x0A, a newline) is 0x7B, an opening brace.
    """
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    pad = synthetic.kv("pad", "")
    resource_spans.resource.attributes.append(pad)
    span = resource_spans.scope_spans.add().spans.add()
    span.trace_id = synthetic.new_trace_id()
    span.span_id = synthetic.new_span_id()
    span.name = "chat"
    span.start_time_unix_nano = time.time_ns()
    span.end_time_unix_nano = span.start_time_unix_nano + 1_000_000
    short = BRACE - resource_spans.ByteSize()
    resource_spans.resource.attributes[0].value.string_value = "x" * short
    if resource_spans.ByteSize() != BRACE:
        raise RuntimeError("the padding did not reach 123 bytes")
    return request
