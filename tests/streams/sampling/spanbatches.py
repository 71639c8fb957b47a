"""SpanBatch records of synthetic traces, split into several input batches."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

from llmobs import synthetic
from streams.decode import Source, decode_message


def split(
    request: ExportTraceServiceRequest, groups: Sequence[Sequence[int]]
) -> list[bytes]:
    """One encoded SpanBatch per group of span positions (0 is the root)."""
    spans = list(request.resource_spans[0].scope_spans[0].spans)
    out = []
    for group in groups:
        part = ExportTraceServiceRequest()
        part.CopyFrom(request)
        scope = part.resource_spans[0].scope_spans[0]
        del scope.spans[:]
        scope.spans.extend(spans[i] for i in group)
        decoded = decode_message(part.SerializeToString(), None, Source("t", 0, 0))
        ((_, value),) = decoded.batches
        out.append(value)
    return out


def trace_in_batches(
    calls: int, groups: Sequence[Sequence[int]], error: bool = False
) -> tuple[str, list[bytes], set[str]]:
    """A trace (id, its batches, its span ids) of ``calls`` model calls."""
    request = synthetic.llm_trace(calls=calls, error=error)
    spans = request.resource_spans[0].scope_spans[0].spans
    span_ids = {s.span_id.hex() for s in spans}
    return spans[0].trace_id.hex(), split(request, groups), span_ids
