"""Decode OTLP trace requests leniently: keep every span that can be read.

Both decoders return the valid spans in their original resource and scope
structure plus one Rejection per reason, so a caller can acknowledge the good
part and send the rest to the dead-letter topic.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError as ProtobufDecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from llmobs.errors import DecodeError
from llmobs.otlp import wire
from llmobs.otlp.validate import (
    EMPTY_REQUEST,
    INVALID_PROTOBUF,
    INVALID_UTF8,
    JSON,
    NESTED_TOO_DEEP,
    NOT_PROTOBUF,
    NOT_TRACES,
    PROTOBUF,
    Decoded,
    Rejects,
    validate,
)

# Field numbers of opentelemetry-proto trace messages.
_REQUEST_RESOURCE_SPANS = 1
_RESOURCE_SPANS_SCOPE_SPANS = 2
_SCOPE_SPANS_SPANS = 2


def decode_proto(data: bytes) -> Decoded:
    """Parse a serialized ExportTraceServiceRequest, rejecting only bad spans.

    A body without a single valid span that reads as an OTLP metrics or logs
    request raises NOT_TRACES, naming the signal it carries.
    """
    try:
        decoded = _decode_traces(data)
    except DecodeError as exc:
        if exc.reason == NOT_PROTOBUF and (signal := other_signal(data)):
            raise _not_traces(signal) from exc
        raise
    if decoded.span_count == 0 and (signal := other_signal(data)):
        raise _not_traces(signal)
    return decoded


def other_signal(data: bytes) -> str | None:
    """ "metrics" or "logs" when ``data`` reads as such a request, else None."""
    try:
        metrics = ExportMetricsServiceRequest.FromString(data)
        named = [
            metric.name and metric.WhichOneof("data")
            for rm in metrics.resource_metrics
            for sm in rm.scope_metrics
            for metric in sm.metrics
        ]
        if named and all(named):
            return "metrics"
    except (ProtobufDecodeError, ValueError):
        pass
    try:
        logs = ExportLogsServiceRequest.FromString(data)
        timed = [
            record.time_unix_nano or record.observed_time_unix_nano
            for rl in logs.resource_logs
            for sl in rl.scope_logs
            for record in sl.log_records
        ]
        if timed and all(timed):
            return "logs"
    except (ProtobufDecodeError, ValueError):
        pass
    return None


def _not_traces(signal: str) -> DecodeError:
    return DecodeError(NOT_TRACES, f"an OTLP {signal} request, not traces")


def _decode_traces(data: bytes) -> Decoded:
    rejects = Rejects()
    try:
        request = ExportTraceServiceRequest.FromString(data)
    except ProtobufDecodeError:
        request = _salvage(data, rejects)
    else:
        if data and not request.resource_spans:
            # It parsed only because every field was unknown to the schema.
            raise DecodeError(NOT_PROTOBUF, "no resource spans in the message")

    decoded = validate(request, rejects, len(data))
    if decoded.span_count == 0 and not decoded.rejected:
        raise DecodeError(EMPTY_REQUEST, "the request holds no spans")
    return decoded


def _salvage(data: bytes, rejects: Rejects) -> ExportTraceServiceRequest:
    """Parse each resource, scope and span on its own after a whole-message failure."""
    try:
        pieces = wire.submessages(data, _REQUEST_RESOURCE_SPANS)
    except wire.WireError as exc:
        raise DecodeError(NOT_PROTOBUF, f"not protobuf: {exc}") from exc
    if not pieces:
        raise DecodeError(NOT_PROTOBUF, "no resource spans in the message")

    request = ExportTraceServiceRequest()
    for piece in pieces:
        try:
            request.resource_spans.append(ResourceSpans.FromString(piece))
        except ProtobufDecodeError:
            _salvage_resource(piece, request, rejects)
    return request


def _salvage_resource(
    piece: bytes, request: ExportTraceServiceRequest, rejects: Rejects
) -> None:
    try:
        shell_bytes, scopes = wire.without(piece, _RESOURCE_SPANS_SCOPE_SPANS)
    except wire.WireError as exc:
        rejects.add(
            INVALID_PROTOBUF,
            f"resource spans not readable: {exc}",
            1,
            wire.encode_field(_REQUEST_RESOURCE_SPANS, piece),
        )
        return

    try:
        shell = ResourceSpans.FromString(shell_bytes)
    except ProtobufDecodeError as exc:
        rejects.add(
            *_unreadable("the resource", exc),
            sum(_count_spans(scope) for scope in scopes),
            wire.encode_field(_REQUEST_RESOURCE_SPANS, piece),
        )
        return

    target = request.resource_spans.add()
    target.CopyFrom(shell)
    for scope in scopes:
        _salvage_scope(scope, shell_bytes, target, rejects)


def _salvage_scope(
    piece: bytes, resource_shell: bytes, target: ResourceSpans, rejects: Rejects
) -> None:
    def reject(reason: str, detail: str, spans: int, scope_bytes: bytes) -> None:
        resource = resource_shell + wire.encode_field(
            _RESOURCE_SPANS_SCOPE_SPANS, scope_bytes
        )
        payload = wire.encode_field(_REQUEST_RESOURCE_SPANS, resource)
        rejects.add(reason, detail, spans, payload)

    try:
        shell_bytes, spans = wire.without(piece, _SCOPE_SPANS_SPANS)
    except wire.WireError as exc:
        reject(INVALID_PROTOBUF, f"scope spans not readable: {exc}", 1, piece)
        return

    try:
        shell = ScopeSpans.FromString(shell_bytes)
    except ProtobufDecodeError as exc:
        reject(*_unreadable("the scope", exc), len(spans), piece)
        return

    scope = target.scope_spans.add()
    scope.CopyFrom(shell)
    bad: dict[tuple[str, str], list[bytes]] = {}
    for span_bytes in spans:
        try:
            scope.spans.append(Span.FromString(span_bytes))
        except ProtobufDecodeError as exc:
            if _well_formed(span_bytes):
                why = _unreadable("a span", exc)
            else:
                why = (INVALID_PROTOBUF, "a span is not well-formed protobuf")
            bad.setdefault(why, []).append(span_bytes)

    for (reason, detail), unread in bad.items():
        encoded = b"".join(wire.encode_field(_SCOPE_SPANS_SPANS, s) for s in unread)
        reject(reason, detail, len(unread), shell_bytes + encoded)


def _unreadable(what: str, error: ProtobufDecodeError) -> tuple[str, str]:
    """Why well-formed bytes of ``what`` did not parse: the decoder's depth
    limit (upb names it), else, the one other thing it checks, UTF-8."""
    if "MaxDepth" in str(error):
        return NESTED_TOO_DEEP, f"{what} nests values deeper than protobuf allows"
    return INVALID_UTF8, f"{what} holds a string that is not valid UTF-8"


def _well_formed(span_bytes: bytes) -> bool:
    """True when a span that failed to parse has sound top-level wire structure.

    Its failure is then almost always a string that is not valid UTF-8, the
    one thing upb checks beyond structure.
    """
    try:
        wire.fields(span_bytes)
    except wire.WireError:
        return False
    return True


def _count_spans(scope_bytes: bytes) -> int:
    try:
        return len(wire.submessages(scope_bytes, _SCOPE_SPANS_SPANS))
    except wire.WireError:
        return 1


def decode_untyped(data: bytes) -> tuple[Decoded, str]:
    """Decode a body of unknown encoding: OTLP protobuf or OTLP JSON.

    Returns the decoded request and the content type it was read as. A
    serialized request opens with field 1's tag, 0x0A, which is also a
    newline: white space before "{" cannot tell the two apart, so protobuf
    is tried first on such a body and JSON only when that fails.
    """
    from llmobs.otlp.json_decode import decode_json

    looks_json = data.lstrip()[:1] == b"{"
    if looks_json and data[:1] != b"\n":
        try:
            return decode_json(data), JSON
        except DecodeError as exc:
            raise UntypedDecodeError(exc, JSON) from exc
    try:
        return decode_proto(data), PROTOBUF
    except DecodeError as exc:
        if exc.reason != NOT_PROTOBUF or not looks_json:
            raise UntypedDecodeError(exc, PROTOBUF) from exc
    try:
        return decode_json(data), JSON
    except DecodeError as exc:
        raise UntypedDecodeError(exc, JSON) from exc


class UntypedDecodeError(DecodeError):
    """A DecodeError that names the content type the body was read as."""

    def __init__(self, error: DecodeError, content_type: str) -> None:
        super().__init__(error.reason, error.detail)
        self.content_type = content_type
