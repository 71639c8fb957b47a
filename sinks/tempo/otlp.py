"""SpanBatch records back into OTLP ExportTraceServiceRequest bytes.

Spans are grouped under their resource and scope again. The request is
assembled on the protobuf wire from the bytes the record kept
(``resource_proto``, ``scope_proto``, ``span_proto``), so everything the app
sent, unknown fields included, reaches the backend unchanged. Cost attributes
are appended as extra ``Span.attributes`` entries: repeated fields of a
serialized message may simply be concatenated.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from llmobs.otlp.wire import encode_field

# Field numbers of opentelemetry/proto/trace/v1/trace.proto and the collector.
REQUEST_RESOURCE_SPANS = 1
RESOURCE_SPANS_RESOURCE = 1
RESOURCE_SPANS_SCOPE_SPANS = 2
RESOURCE_SPANS_SCHEMA_URL = 3
SCOPE_SPANS_SCOPE = 1
SCOPE_SPANS_SPANS = 2
SCOPE_SPANS_SCHEMA_URL = 3
SPAN_ATTRIBUTES = 9

ResourceKey = tuple[bytes, str]
ScopeKey = tuple[bytes, str]


class RequestBuilder:
    """Collects the spans of many records into one request, grouped."""

    def __init__(self) -> None:
        self.spans = 0
        self._groups: dict[ResourceKey, dict[ScopeKey, list[bytes]]] = {}

    def add(self, record: dict[str, Any], indexes: Sequence[int] | None = None) -> int:
        """Add the spans of one SpanBatch record (all, or these); returns how many."""
        resources = record["resources"]
        spans = record["spans"]
        # Every span is read before any is kept: a record that fails half-way
        # must leave nothing in the request, since it goes to the DLQ whole.
        ready = []
        for span in spans if indexes is None else [spans[i] for i in indexes]:
            rs = resources[span["resource_index"]]
            resource_key = (rs["resource_proto"], rs.get("resource_schema_url", ""))
            scope_key = (rs["scope_proto"], rs.get("scope_schema_url", ""))
            ready.append((resource_key, scope_key, span_bytes(span)))
        for resource_key, scope_key, data in ready:
            scopes = self._groups.setdefault(resource_key, {})
            scopes.setdefault(scope_key, []).append(data)
        self.spans += len(ready)
        return len(ready)

    def build(self) -> bytes:
        """The serialized ExportTraceServiceRequest."""
        out = []
        for (resource, resource_url), scopes in self._groups.items():
            parts = [encode_field(RESOURCE_SPANS_RESOURCE, resource)]
            for (scope, scope_url), spans in scopes.items():
                parts.append(
                    encode_field(
                        RESOURCE_SPANS_SCOPE_SPANS,
                        _scope_spans(scope, scope_url, spans),
                    )
                )
            if resource_url:
                parts.append(
                    encode_field(RESOURCE_SPANS_SCHEMA_URL, resource_url.encode())
                )
            out.append(encode_field(REQUEST_RESOURCE_SPANS, b"".join(parts)))
        return b"".join(out)


def _scope_spans(scope: bytes, schema_url: str, spans: Iterable[bytes]) -> bytes:
    parts = [encode_field(SCOPE_SPANS_SCOPE, scope)]
    parts += [encode_field(SCOPE_SPANS_SPANS, span) for span in spans]
    if schema_url:
        parts.append(encode_field(SCOPE_SPANS_SCHEMA_URL, schema_url.encode()))
    return b"".join(parts)


def span_bytes(span: dict[str, Any]) -> bytes:
    """The span as received, plus our cost attributes when it was priced."""
    data: bytes = span["span_proto"]
    cost = span.get("cost")
    if not cost:
        return data
    from streams.cost.attributes import cost_attributes

    extra = b"".join(
        encode_field(SPAN_ATTRIBUTES, kv.SerializeToString())
        for kv in cost_attributes(cost)
    )
    return data + extra


def build_request(records: Iterable[dict[str, Any]]) -> bytes:
    """One request holding every span of ``records``."""
    builder = RequestBuilder()
    for record in records:
        builder.add(record)
    return builder.build()
