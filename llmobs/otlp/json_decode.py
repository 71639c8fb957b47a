"""Decode OTLP/JSON trace requests.

OTLP/JSON differs from the generic protobuf JSON mapping in one way that
matters: trace and span ids are hex strings, not base64. They are converted
before google.protobuf.json_format reads the document; everything else
(camelCase or snake_case keys, enums by name or number, 64-bit integers as
strings) json_format already accepts.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import orjson
from google.protobuf.json_format import ParseDict, ParseError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from llmobs.errors import DecodeError
from llmobs.otlp.validate import (
    EMPTY_REQUEST,
    INVALID_JSON,
    INVALID_UTF8,
    JSON,
    NOT_TRACES,
    Decoded,
    Rejects,
    validate,
)

_SPAN_ID_KEYS = (
    "traceId",
    "trace_id",
    "spanId",
    "span_id",
    "parentSpanId",
    "parent_span_id",
)
_LINK_ID_KEYS = ("traceId", "trace_id", "spanId", "span_id")
_DETAIL_CHARS = 200
# What json_format raises on documents of the wrong shape.
_PARSE_ERRORS = (ParseError, AttributeError, TypeError, ValueError)


# The top-level keys of OTLP/JSON requests of the other signals.
_OTHER_SIGNALS = {
    "metrics": ("resourceMetrics", "resource_metrics"),
    "logs": ("resourceLogs", "resource_logs"),
}


def decode_json(data: bytes) -> Decoded:
    """Parse an OTLP/JSON ExportTraceServiceRequest, rejecting only bad spans."""
    doc = _load(data)
    if not isinstance(doc, dict):
        raise DecodeError(INVALID_JSON, "the document must be a JSON object")

    resources = _get(doc, "resourceSpans", "resource_spans")
    if resources is None:
        for signal, keys in _OTHER_SIGNALS.items():
            if any(key in doc for key in keys):
                raise DecodeError(NOT_TRACES, f"an OTLP {signal} request, not traces")
        if doc:
            raise DecodeError(INVALID_JSON, "no resourceSpans: not a trace request")
        raise DecodeError(EMPTY_REQUEST, "the request holds no spans")
    if not isinstance(resources, list):
        raise DecodeError(INVALID_JSON, "resourceSpans must be an array")

    rejects = Rejects()
    converted = [_convert_resource(rs) for rs in resources]
    try:
        request = ParseDict(
            {"resourceSpans": converted},
            ExportTraceServiceRequest(),
            ignore_unknown_fields=True,
        )
    except ParseError:
        request = _parse_piecewise(resources, converted, rejects)

    decoded = validate(request, rejects)
    if decoded.span_count == 0 and not decoded.rejected:
        raise DecodeError(EMPTY_REQUEST, "the request holds no spans")
    return decoded


def _load(data: bytes) -> Any:
    """The JSON document, its bad strings kept as lone surrogates.

    orjson refuses a whole document for one string of invalid UTF-8 or one
    unpaired surrogate escape; the standard parser reads both, so that only
    the spans holding such a string are rejected.
    """
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        error = exc
    try:
        return json.loads(data.decode("utf-8", "surrogateescape"))
    except (ValueError, RecursionError):
        raise DecodeError(INVALID_JSON, f"not JSON: {error}") from error


def _parse_piecewise(
    originals: list[Any], converted: list[Any], rejects: Rejects
) -> ExportTraceServiceRequest:
    """Parse each resource, scope and span alone after a whole-document failure."""
    request = ExportTraceServiceRequest()
    for original_rs, rs_doc in zip(originals, converted, strict=True):
        scopes = _get(rs_doc, "scopeSpans", "scope_spans") or []
        try:
            if not isinstance(scopes, list):
                raise ParseError("scopeSpans must be an array")
            shell = _shell(rs_doc, "scopeSpans", "scope_spans")
            rs = ParseDict(shell, ResourceSpans(), ignore_unknown_fields=True)
        except _PARSE_ERRORS as exc:
            _reject(rejects, exc, _count_spans(scopes), original_rs)
            continue

        target = request.resource_spans.add()
        target.CopyFrom(rs)
        original_scopes = _get(original_rs, "scopeSpans", "scope_spans") or []
        for original_ss, ss_doc in zip(original_scopes, scopes, strict=True):
            _parse_scope(original_rs, original_ss, ss_doc, target, rejects)
    return request


def _parse_scope(
    original_rs: dict[str, Any],
    original_ss: Any,
    ss_doc: Any,
    target: ResourceSpans,
    rejects: Rejects,
) -> None:
    rs_shell = _shell(original_rs, "scopeSpans", "scope_spans")
    spans = _get(ss_doc, "spans") or []
    try:
        if not isinstance(spans, list):
            raise ParseError("spans must be an array")
        shell = _shell(ss_doc, "spans")
        ss = ParseDict(shell, ScopeSpans(), ignore_unknown_fields=True)
    except _PARSE_ERRORS as exc:
        piece = {**rs_shell, "scopeSpans": [original_ss]}
        _reject(rejects, exc, _count_spans([ss_doc]), piece)
        return

    scope = target.scope_spans.add()
    scope.CopyFrom(ss)
    original_spans = _get(original_ss, "spans") or []
    for original_span, span_doc in zip(original_spans, spans, strict=True):
        try:
            scope.spans.append(ParseDict(span_doc, Span(), ignore_unknown_fields=True))
        except _PARSE_ERRORS as exc:
            ss_piece = {**_shell(original_ss, "spans"), "spans": [original_span]}
            _reject(rejects, exc, 1, {**rs_shell, "scopeSpans": [ss_piece]})


def _reject(rejects: Rejects, exc: Exception, spans: int, piece: Any) -> None:
    if _has_bad_text(piece):
        reason, detail = INVALID_UTF8, "a string is not valid UTF-8"
    else:
        reason, detail = INVALID_JSON, f"not an OTLP span: {str(exc)[:_DETAIL_CHARS]}"
    payload = _dump(piece)
    if payload is None:
        detail += "; too deeply nested to keep"
        payload = b"{}"
    rejects.add(reason, detail, spans, payload, content_type=JSON)


def _dump(piece: Any) -> bytes | None:
    """``piece`` as JSON, bad strings as escapes; None if it cannot be written."""
    try:
        return orjson.dumps(piece)
    except (orjson.JSONEncodeError, TypeError):
        pass
    try:
        return json.dumps(piece, ensure_ascii=True).encode()
    except (ValueError, RecursionError):
        return None


def _has_bad_text(doc: Any) -> bool:
    """Whether a string anywhere in ``doc`` holds a surrogate (bad UTF-8)."""
    pending = [doc]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def _convert_resource(rs: Any) -> Any:
    """A copy of one resourceSpans entry with hex ids turned into base64."""
    if not isinstance(rs, dict):
        return rs
    key = "scopeSpans" if "scopeSpans" in rs else "scope_spans"
    scopes = rs.get(key)
    if not isinstance(scopes, list):
        return rs
    return {**rs, key: [_convert_scope(ss) for ss in scopes]}


def _convert_scope(ss: Any) -> Any:
    if not isinstance(ss, dict):
        return ss
    spans = ss.get("spans")
    if not isinstance(spans, list):
        return ss
    return {**ss, "spans": [_convert_span(span) for span in spans]}


def _convert_span(span: Any) -> Any:
    if not isinstance(span, dict):
        return span
    out = dict(span)
    for key in _SPAN_ID_KEYS:
        if key in out:
            out[key] = _hex_to_base64(out[key])
    links = out.get("links")
    if isinstance(links, list):
        out["links"] = [_convert_link(link) for link in links]
    return out


def _convert_link(link: Any) -> Any:
    if not isinstance(link, dict):
        return link
    out = dict(link)
    for key in _LINK_ID_KEYS:
        if key in out:
            out[key] = _hex_to_base64(out[key])
    return out


def _hex_to_base64(value: Any) -> Any:
    """Hex id to the base64 json_format expects; anything else is left for it."""
    if not isinstance(value, str):
        return value
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        # Not hex: some older senders used base64, which json_format reads.
        return value
    return base64.b64encode(raw).decode("ascii")


def _get(doc: Any, *keys: str) -> Any:
    if not isinstance(doc, dict):
        return None
    for key in keys:
        if key in doc:
            return doc[key]
    return None


def _shell(doc: Any, *children: str) -> dict[str, Any]:
    """``doc`` without its child list, for parsing the envelope alone."""
    if not isinstance(doc, dict):
        raise ParseError("expected a JSON object")
    return {k: v for k, v in doc.items() if k not in children}


def _count_spans(scopes: Any) -> int:
    if not isinstance(scopes, list):
        return 1
    total = 0
    for ss in scopes:
        spans = _get(ss, "spans")
        total += len(spans) if isinstance(spans, list) else 1
    return total
