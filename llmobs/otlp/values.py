"""OTLP attribute values as plain Python and as JSON text."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any

import orjson
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span


def any_value(value: AnyValue) -> Any:
    """An AnyValue as str, bool, int, float, bytes, list, dict or None."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        return value.double_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "array_value":
        return [any_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return attributes_dict(value.kvlist_value.values)
    if kind == "bytes_value":
        return value.bytes_value
    return None


def attributes_dict(kvs: Iterable[KeyValue]) -> dict[str, Any]:
    """Key-values as a dict; a repeated key keeps its last value."""
    return {kv.key: any_value(kv.value) for kv in kvs}


def attributes_json(kvs: Iterable[KeyValue]) -> str:
    """Key-values as a JSON object; bytes become base64 strings."""
    return orjson.dumps(attributes_dict(kvs), default=_json_default).decode()


def events_json(span: Span) -> str:
    """The span's events as a JSON array of name, time and attributes."""
    events = []
    for event in span.events:
        item: dict[str, Any] = {
            "time_unix_nano": event.time_unix_nano,
            "name": event.name,
            "attributes": attributes_dict(event.attributes),
        }
        if event.dropped_attributes_count:
            item["dropped_attributes_count"] = event.dropped_attributes_count
        events.append(item)
    return orjson.dumps(events, default=_json_default).decode()


def links_json(span: Span) -> str:
    """The span's links as a JSON array with hex ids."""
    links = []
    for link in span.links:
        item: dict[str, Any] = {
            "trace_id": link.trace_id.hex(),
            "span_id": link.span_id.hex(),
            "attributes": attributes_dict(link.attributes),
        }
        if link.trace_state:
            item["trace_state"] = link.trace_state
        if link.flags:
            item["flags"] = link.flags
        if link.dropped_attributes_count:
            item["dropped_attributes_count"] = link.dropped_attributes_count
        links.append(item)
    return orjson.dumps(links, default=_json_default).decode()


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")
