"""Cut a trace request into one request per trace, resources and scopes kept."""

from __future__ import annotations

from collections.abc import Iterator

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, Span


def split_by_trace(
    request: ExportTraceServiceRequest,
) -> dict[str, ExportTraceServiceRequest]:
    """Requests keyed by lowercase 32-character hex trace id.

    A request that holds a single trace is returned as it is, not copied.
    """
    first: bytes | None = None
    single = True
    for span in _spans(request):
        if first is None:
            first = span.trace_id
        elif span.trace_id != first:
            single = False
            break
    if first is None:
        return {}
    if single:
        return {first.hex(): request}

    out: dict[bytes, ExportTraceServiceRequest] = {}
    for rs in request.resource_spans:
        # One ResourceSpans per trace for this resource, made on first use.
        resources: dict[bytes, ResourceSpans] = {}
        for ss in rs.scope_spans:
            by_trace: dict[bytes, list[Span]] = {}
            for span in ss.spans:
                by_trace.setdefault(span.trace_id, []).append(span)
            for trace_id, spans in by_trace.items():
                target = resources.get(trace_id)
                if target is None:
                    trace_request = out.get(trace_id)
                    if trace_request is None:
                        trace_request = out[trace_id] = ExportTraceServiceRequest()
                    target = resources[trace_id] = trace_request.resource_spans.add(
                        schema_url=rs.schema_url
                    )
                    if rs.HasField("resource"):
                        target.resource.CopyFrom(rs.resource)
                scope = target.scope_spans.add(schema_url=ss.schema_url)
                if ss.HasField("scope"):
                    scope.scope.CopyFrom(ss.scope)
                scope.spans.extend(spans)
    return {trace_id.hex(): trace_request for trace_id, trace_request in out.items()}


def _spans(request: ExportTraceServiceRequest) -> Iterator[Span]:
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            yield from ss.spans
