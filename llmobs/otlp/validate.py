"""Span checks shared by both decoders, and the result types they return.

A span is kept only if its ids and timestamps could belong to a real trace;
this also turns away other OTLP signals (metrics, logs) that happen to parse
as a trace request, since their fields land on ids and timestamps as garbage.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from llmobs.otlp.values import attributes_dict
from llmobs.otlp.wire import encode_field
from llmobs.tenants import INVALID_TENANT, resource_tenant, tenant_problem

INVALID_TRACE_ID = "invalid_trace_id"
INVALID_SPAN_ID = "invalid_span_id"
INVALID_PARENT_SPAN_ID = "invalid_parent_span_id"
INVALID_TIMESTAMPS = "invalid_timestamps"
# Spans start after 2000-01-01 and end before a day after they are read: a
# time outside is a sender's bug (a zero clock, a unit mix-up), and each day
# of it would add a partition to the stores.
MIN_TIME_UNIX_NANO = 946_684_800 * 10**9
FUTURE_SLACK_NS = 86_400 * 10**9
DUPLICATE_SPAN = "duplicate_span"
# A span travels on as one record of at most 4 MiB holding its bytes and its
# attributes again as JSON, so a bigger span could not be kept: it is refused
# here, where the sender still hears why.
SPAN_TOO_LARGE = "span_too_large"
MAX_SPAN_BYTES = 1536 * 1024
INVALID_UTF8 = "invalid_utf8"
# Attribute values nested past the protobuf decoder's depth limit (100
# messages: about 32 levels of kvlist_value).
NESTED_TOO_DEEP = "nested_too_deep"
INVALID_PROTOBUF = "invalid_protobuf"
NOT_PROTOBUF = "not_protobuf"
INVALID_JSON = "invalid_json"
EMPTY_REQUEST = "empty_request"
NOT_TRACES = "not_traces"

PROTOBUF = "application/x-protobuf"
JSON = "application/json"

_ZERO_TRACE_ID = bytes(16)
_ZERO_SPAN_ID = bytes(8)
_RESOURCE_SPANS_FIELD = 1


@dataclass(frozen=True, slots=True)
class Rejection:
    """Spans turned away for one reason, with a replayable payload.

    ``payload`` is an ExportTraceServiceRequest holding only the rejected
    spans (serialized, or OTLP/JSON when ``content_type`` says so); when no
    such request can be built it is the raw input.
    """

    reason: str
    detail: str
    spans: int
    payload: bytes
    content_type: str = PROTOBUF


@dataclass(slots=True)
class Decoded:
    """The valid spans of a request, in their resources and scopes, and the rest."""

    request: ExportTraceServiceRequest
    rejected: list[Rejection] = field(default_factory=list)
    span_count: int = 0

    @property
    def rejected_spans(self) -> int:
        return sum(r.spans for r in self.rejected)

    def rejection_message(self) -> str:
        """A short summary for partial_success.error_message and logs."""
        return "; ".join(f"{r.spans} {r.reason}: {r.detail}" for r in self.rejected)


class Rejects:
    """Collects rejected pieces by reason; each piece is a whole ResourceSpans."""

    def __init__(self) -> None:
        self._by_reason: dict[str, tuple[str, int, list[bytes], str]] = {}

    def add(
        self,
        reason: str,
        detail: str,
        spans: int,
        payload: bytes,
        content_type: str = PROTOBUF,
    ) -> None:
        """Record ``spans`` rejected spans; ``payload`` is one encoded piece.

        Protobuf pieces are serialized ResourceSpans entries (field 1 of the
        request, tag included), so their concatenation is a valid request.
        """
        key = f"{reason}\0{content_type}"
        known = self._by_reason.get(key)
        if known is None:
            self._by_reason[key] = (detail, spans, [payload], content_type)
            return
        first_detail, count, pieces, _ = known
        pieces.append(payload)
        self._by_reason[key] = (first_detail, count + spans, pieces, content_type)

    def add_spans(
        self,
        reason: str,
        detail: str,
        rs: ResourceSpans,
        ss: ScopeSpans,
        spans: list[Span],
    ) -> None:
        """Reject parsed spans, keeping their resource and scope for replay."""
        piece = ResourceSpans(schema_url=rs.schema_url)
        if rs.HasField("resource"):
            piece.resource.CopyFrom(rs.resource)
        scope = piece.scope_spans.add(schema_url=ss.schema_url)
        if ss.HasField("scope"):
            scope.scope.CopyFrom(ss.scope)
        scope.spans.extend(spans)
        payload = encode_field(_RESOURCE_SPANS_FIELD, piece.SerializeToString())
        self.add(reason, detail, len(spans), payload)

    def __bool__(self) -> bool:
        return bool(self._by_reason)

    def result(self) -> list[Rejection]:
        out = []
        for key, (detail, spans, pieces, content_type) in self._by_reason.items():
            reason = key.partition("\0")[0]
            if content_type == JSON:
                payload = b'{"resourceSpans":[' + b",".join(pieces) + b"]}"
            else:
                payload = b"".join(pieces)
            out.append(Rejection(reason, detail, spans, payload, content_type))
        return out


def check_span(span: Span, now_ns: int | None = None) -> tuple[str, str] | None:
    """The reason and detail why ``span`` cannot be kept, or None."""
    trace_id = span.trace_id
    if len(trace_id) != 16:
        return INVALID_TRACE_ID, f"trace id must be 16 bytes, got {len(trace_id)}"
    if trace_id == _ZERO_TRACE_ID:
        return INVALID_TRACE_ID, "trace id is all zero"

    span_id = span.span_id
    if len(span_id) != 8:
        return INVALID_SPAN_ID, f"span id must be 8 bytes, got {len(span_id)}"
    if span_id == _ZERO_SPAN_ID:
        return INVALID_SPAN_ID, "span id is all zero"

    parent = span.parent_span_id
    if parent and len(parent) != 8:
        return (
            INVALID_PARENT_SPAN_ID,
            f"parent span id must be empty or 8 bytes, got {len(parent)}",
        )

    start_ns = span.start_time_unix_nano
    if start_ns == 0:
        return INVALID_TIMESTAMPS, "start time is zero"
    if start_ns < MIN_TIME_UNIX_NANO:
        return INVALID_TIMESTAMPS, "start time is before the year 2000"
    if span.end_time_unix_nano < start_ns:
        return INVALID_TIMESTAMPS, "end time is before start time"
    latest_ns = (time.time_ns() if now_ns is None else now_ns) + FUTURE_SLACK_NS
    if span.end_time_unix_nano > latest_ns:
        return INVALID_TIMESTAMPS, "end time is more than a day ahead"
    return None


def _too_large(span: Span) -> tuple[str, str] | None:
    size = span.ByteSize()
    if size > MAX_SPAN_BYTES:
        return SPAN_TOO_LARGE, f"span is {size} bytes, over {MAX_SPAN_BYTES}"
    return None


def validate(
    request: ExportTraceServiceRequest,
    rejects: Rejects,
    encoded_bytes: int | None = None,
) -> Decoded:
    """Remove invalid and repeated spans from ``request`` in place.

    ``encoded_bytes``, the size of the protobuf ``request`` was read from,
    spares measuring each span when the whole is small enough for any.
    """
    seen: set[tuple[bytes, bytes]] = set()
    kept = 0
    now_ns = time.time_ns()
    measure = encoded_bytes is None or encoded_bytes > MAX_SPAN_BYTES
    # Earlier rejections (by the salvage) may have left empty containers too.
    pruned = bool(rejects)
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            bad_indexes: list[int] = []
            bad_by_reason: dict[str, tuple[str, list[Span]]] = {}
            for index, span in enumerate(ss.spans):
                problem = check_span(span, now_ns)
                if problem is None and measure:
                    problem = _too_large(span)
                if problem is None:
                    key = (span.trace_id, span.span_id)
                    if key not in seen:
                        seen.add(key)
                        kept += 1
                        continue
                    problem = (DUPLICATE_SPAN, "span id repeated within one request")
                bad_indexes.append(index)
                bad_by_reason.setdefault(problem[0], (problem[1], []))[1].append(span)
            if not bad_indexes:
                continue

            for reason, (detail, spans) in bad_by_reason.items():
                rejects.add_spans(reason, detail, rs, ss, spans)
            for index in reversed(bad_indexes):
                del ss.spans[index]
            pruned = True

    if pruned:
        _drop_empty(request)
    return Decoded(request=request, rejected=rejects.result(), span_count=kept)


def _drop_empty(request: ExportTraceServiceRequest) -> None:
    """Remove scopes and resources left without spans by rejections."""
    for rs_index in range(len(request.resource_spans) - 1, -1, -1):
        rs = request.resource_spans[rs_index]
        for ss_index in range(len(rs.scope_spans) - 1, -1, -1):
            if not rs.scope_spans[ss_index].spans:
                del rs.scope_spans[ss_index]
        if not rs.scope_spans:
            del request.resource_spans[rs_index]


def reject_bad_tenants(decoded: Decoded) -> Decoded:
    """Move the resources whose ``tenant.id`` is no valid tenant to rejections.

    Only for requests whose tenant is not set otherwise (by an API key or a
    Kafka header), where that attribute decides where the spans belong.
    """
    request = decoded.request
    rejects = Rejects()
    removed = 0
    for rs_index in range(len(request.resource_spans) - 1, -1, -1):
        rs = request.resource_spans[rs_index]
        problem = tenant_problem(
            resource_tenant(attributes_dict(rs.resource.attributes))
        )
        if problem is None:
            continue
        for ss in rs.scope_spans:
            rejects.add_spans(INVALID_TENANT, problem, rs, ss, list(ss.spans))
            removed += len(ss.spans)
        del request.resource_spans[rs_index]
    if not rejects:
        return decoded
    return Decoded(
        request=request,
        rejected=decoded.rejected + rejects.result(),
        span_count=decoded.span_count - removed,
    )
