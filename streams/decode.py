"""Turn one ``otlp_spans`` message into normalized span batches and dead letters.

Pure functions, no Kafka: the Faust agent feeds message bytes and headers in
and sends what comes out. One input message may hold many traces and many
resources; the output is one SpanBatch record per (tenant, trace), keyed by
trace id, so downstream partitions group whole traces whatever the producer
did. Spans that fail decoding or validation become dead letters carrying the
reason; the rest of the message goes on. Every span is priced on the way
(``streams.cost``); the statuses are counted for /metrics.
"""

from __future__ import annotations

import base64
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

import orjson
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.trace.v1 import trace_pb2

import schemas
from llmobs import otlp, topics
from llmobs.tenants import INVALID_TENANT, resource_tenant, tenant_problem
from streams.normalize import clean_text, normalize_genai

if TYPE_CHECKING:
    from streams.cost import Pricer

# Records stay well under the broker's 16 MiB message limit; a bigger trace
# travels as several records.
MAX_RECORD_BYTES = 4 * 1024 * 1024
TRACES = "traces"

_KIND_NAMES = {value: name for name, value in trace_pb2.Span.SpanKind.items()}
_STATUS_NAMES = {
    trace_pb2.Status.STATUS_CODE_UNSET: "UNSET",
    trace_pb2.Status.STATUS_CODE_OK: "OK",
    trace_pb2.Status.STATUS_CODE_ERROR: "ERROR",
}


@dataclass(frozen=True)
class Source:
    """Where a message came from, for dead-letter headers and lineage."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None = None

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}] {self.offset}"


@dataclass
class DeadLetter:
    """Input set aside with the reason it could not be processed."""

    reason: str
    detail: str
    value: bytes
    spans: int
    content_type: str = otlp.PROTOBUF

    def headers(self, source: Source) -> list[tuple[str, bytes]]:
        return [
            (topics.HEADER_DLQ_REASON, self.reason.encode()),
            (topics.HEADER_DLQ_DETAIL, self.detail.encode()[:1024]),
            (topics.HEADER_DLQ_TOPIC, source.topic.encode()),
            (topics.HEADER_DLQ_PARTITION, str(source.partition).encode()),
            (topics.HEADER_DLQ_OFFSET, str(source.offset).encode()),
            (topics.HEADER_DLQ_CONTENT_TYPE, self.content_type.encode()),
        ]


@dataclass
class Decoded:
    """Everything one input message turned into."""

    batches: list[tuple[str, bytes]] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    spans: int = 0
    genai_spans: int = 0
    cost_statuses: Counter[str] = field(default_factory=Counter)
    # (provider, model) of spans whose model has no price
    unknown_models: Counter[tuple[str, str]] = field(default_factory=Counter)


def header_value(headers: Mapping[str, Any] | None, name: str) -> str | None:
    if not headers:
        return None
    raw = headers.get(name)
    if raw is None:
        return None
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


@cache
def default_pricer() -> Pricer:
    """A pricer of the catalog alone, for callers that pass none."""
    from streams.cost import Pricer

    return Pricer()


def decode_message(
    value: bytes | None,
    headers: Mapping[str, Any] | None,
    source: Source,
    pricer: Pricer | None = None,
) -> Decoded:
    """Decode, validate, normalize and price one ``otlp_spans`` message."""
    out = Decoded()
    if not value:
        out.dead_letters.append(
            DeadLetter(otlp.EMPTY_REQUEST, "message has no value", b"", 0)
        )
        return out

    signal = header_value(headers, topics.HEADER_SIGNAL)
    if signal is not None and signal != TRACES:
        out.dead_letters.append(
            DeadLetter(
                otlp.NOT_TRACES,
                f"the {topics.HEADER_SIGNAL} header says {signal!r}",
                value,
                0,
            )
        )
        return out

    # The Collector's kafkaexporter writes otlp_proto by default and
    # otlp_json on request, with no header saying which.
    try:
        decoded, content_type = otlp.decode_untyped(value)
    except otlp.UntypedDecodeError as exc:
        out.dead_letters.append(
            DeadLetter(exc.reason, exc.detail, value, 0, exc.content_type)
        )
        return out

    header_tenant = header_value(headers, topics.HEADER_TENANT)
    if header_tenant is None:
        decoded = otlp.reject_bad_tenants(decoded)
    elif problem := tenant_problem(header_tenant):
        # The header speaks for every span of the message.
        spans = decoded.span_count + decoded.rejected_spans
        out.dead_letters.append(
            DeadLetter(INVALID_TENANT, problem, value, spans, content_type)
        )
        return out

    for rejection in decoded.rejected:
        out.dead_letters.append(
            DeadLetter(
                rejection.reason,
                rejection.detail,
                rejection.payload,
                rejection.spans,
                rejection.content_type,
            )
        )
    if not decoded.request.resource_spans and not decoded.rejected:
        out.dead_letters.append(
            DeadLetter(otlp.EMPTY_REQUEST, "request holds no spans", value, 0)
        )
        return out

    received_ns = _received_ns(headers, source)
    _normalize_request(
        decoded.request,
        header_tenant,
        received_ns,
        source,
        pricer or default_pricer(),
        out,
    )
    return out


def _received_ns(headers: Mapping[str, Any] | None, source: Source) -> int:
    stamped = header_value(headers, topics.HEADER_RECEIVED_NS)
    if stamped and stamped.isdigit():
        return int(stamped)
    if source.timestamp_ms:
        return source.timestamp_ms * 1_000_000
    return time.time_ns()


def _normalize_request(
    request: Any,
    header_tenant: str | None,
    received_ns: int,
    source: Source,
    pricer: Pricer,
    out: Decoded,
) -> None:
    codec = schemas.codec(schemas.SPAN_BATCH)
    source_text = str(source)
    # (tenant, trace id) -> batch under construction
    batches: dict[tuple[str, str], dict[str, Any]] = {}
    # per batch: (resource index in request, scope index) -> index in batch
    refs: dict[tuple[str, str], dict[tuple[int, int], int]] = {}

    for r_index, resource_spans in enumerate(request.resource_spans):
        resource = resource_spans.resource
        resource_attrs = otlp.attributes_dict(resource.attributes)
        service_name = clean_text(str(resource_attrs.get("service.name", "")))
        tenant = header_tenant or resource_tenant(resource_attrs)
        resource_bytes = resource.SerializeToString()
        resource_json = orjson.dumps(resource_attrs, default=_json_default).decode()

        for s_index, scope_spans in enumerate(resource_spans.scope_spans):
            scope_bytes = scope_spans.scope.SerializeToString()
            for span in scope_spans.spans:
                trace_id = span.trace_id.hex()
                batch_key = (tenant, trace_id)
                batch = batches.get(batch_key)
                if batch is None:
                    batch = {
                        "tenant": tenant,
                        "trace_id": trace_id,
                        "received_unix_nano": received_ns,
                        "source": source_text,
                        "resources": [],
                        "spans": [],
                    }
                    batches[batch_key] = batch
                    refs[batch_key] = {}
                resource_refs = refs[batch_key]
                ref = resource_refs.get((r_index, s_index))
                if ref is None:
                    ref = len(batch["resources"])
                    resource_refs[(r_index, s_index)] = ref
                    batch["resources"].append(
                        {
                            "resource_proto": resource_bytes,
                            "resource_schema_url": resource_spans.schema_url,
                            "scope_proto": scope_bytes,
                            "scope_schema_url": scope_spans.schema_url,
                            "service_name": service_name,
                            "resource_attributes_json": resource_json,
                        }
                    )
                record = _span_record(span, ref, tenant, pricer, scope_spans.scope)
                genai = record["genai"]
                if genai is not None:
                    out.genai_spans += 1
                    _count_cost(record["cost"], genai, out)
                batch["spans"].append(record)
                out.spans += 1

    for (_, trace_id), batch in batches.items():
        _encode_trace(trace_id, batch, codec, out)


def _encode_trace(
    trace_id: str, batch: dict[str, Any], codec: schemas.Codec, out: Decoded
) -> None:
    """Encode one trace's batch, halving it until every record fits.

    A record over ``MAX_RECORD_BYTES`` would be refused by the broker, and a
    value outside Avro's ranges cannot be written at all; either way only the
    span at fault is dead-lettered, the rest of the trace goes on.
    """
    pending = [batch["spans"]]
    while pending:
        spans = pending.pop()
        part = {**batch, "spans": spans}
        try:
            value = codec.encode(part)
        except (ValueError, TypeError, OverflowError) as exc:
            if len(spans) > 1:
                pending.extend(_halves(spans))
                continue
            out.dead_letters.append(
                DeadLetter("unencodable", str(exc)[:200], _span_request(part), 1)
            )
            continue
        if len(value) <= MAX_RECORD_BYTES:
            out.batches.append((trace_id, value))
        elif len(spans) > 1:
            pending.extend(_halves(spans))
        else:
            detail = f"one span makes a {len(value)} byte record"
            out.dead_letters.append(
                DeadLetter(otlp.SPAN_TOO_LARGE, detail, _span_request(part), 1)
            )


def _halves(spans: list[Any]) -> tuple[list[Any], list[Any]]:
    """The second half first: ``pending`` is a stack, so order is kept."""
    middle = len(spans) // 2
    return spans[middle:], spans[:middle]


def _span_request(part: dict[str, Any]) -> bytes:
    """A replayable OTLP request holding the single span of ``part``."""
    (span,) = part["spans"]
    origin = part["resources"][span["resource_index"]]
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.ParseFromString(origin["resource_proto"])
    resource_spans.schema_url = origin["resource_schema_url"]
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.ParseFromString(origin["scope_proto"])
    scope_spans.schema_url = origin["scope_schema_url"]
    scope_spans.spans.add().ParseFromString(span["span_proto"])
    return request.SerializeToString()


def _span_record(
    span: Any, resource_index: int, tenant: str, pricer: Pricer, scope: Any
) -> dict[str, Any]:
    attributes = otlp.attributes_dict(span.attributes)
    status_code = _STATUS_NAMES.get(span.status.code, "UNSET")
    genai = normalize_genai(
        attributes,
        span_name=span.name,
        status_code=status_code,
        scope_name=scope.name,
        scope_version=scope.version,
    )
    return {
        "resource_index": resource_index,
        "span_proto": span.SerializeToString(),
        "span_id": span.span_id.hex(),
        "parent_span_id": span.parent_span_id.hex() or None,
        "name": span.name,
        "kind": _KIND_NAMES.get(span.kind, "SPAN_KIND_UNSPECIFIED"),
        "start_unix_nano": span.start_time_unix_nano,
        "end_unix_nano": span.end_time_unix_nano,
        "status_code": status_code,
        "status_message": span.status.message,
        "attributes_json": orjson.dumps(attributes, default=_json_default).decode(),
        "events_json": otlp.events_json(span),
        "links_count": len(span.links),
        "genai": genai,
        "cost": pricer.price(genai, span.start_time_unix_nano, tenant),
    }


def _count_cost(
    cost: dict[str, Any] | None, genai: dict[str, Any], out: Decoded
) -> None:
    if cost is None:
        return
    status = cost["status"]
    out.cost_statuses[status] += 1
    if status == "unknown_model":
        model = genai["response_model"] or genai["request_model"] or ""
        out.unknown_models[(genai["provider"] or "", model)] += 1


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    raise TypeError(type(value).__name__)
