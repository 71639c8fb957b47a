"""OTLP trace requests: lenient decoding, validation, per-trace splitting, values.

Shared by the ingest gateway and the stream decode stage::

    decoded = decode_proto(body)           # or decode_json(body)
    for trace_id, request in split_by_trace(decoded.request).items(): ...
    for rejection in decoded.rejected: ... # to llm.dlq

Both decoders raise DecodeError (reason NOT_PROTOBUF, INVALID_JSON or
EMPTY_REQUEST) when nothing in the input is a usable trace request.
"""

from llmobs.otlp.decode import UntypedDecodeError, decode_proto, decode_untyped
from llmobs.otlp.json_decode import decode_json
from llmobs.otlp.split import split_by_trace
from llmobs.otlp.validate import (
    DUPLICATE_SPAN,
    EMPTY_REQUEST,
    INVALID_JSON,
    INVALID_PARENT_SPAN_ID,
    INVALID_PROTOBUF,
    INVALID_SPAN_ID,
    INVALID_TIMESTAMPS,
    INVALID_TRACE_ID,
    INVALID_UTF8,
    JSON,
    NESTED_TOO_DEEP,
    NOT_PROTOBUF,
    NOT_TRACES,
    PROTOBUF,
    SPAN_TOO_LARGE,
    Decoded,
    Rejection,
    check_span,
    reject_bad_tenants,
)
from llmobs.otlp.values import (
    any_value,
    attributes_dict,
    attributes_json,
    events_json,
    links_json,
)

__all__ = [
    "DUPLICATE_SPAN",
    "EMPTY_REQUEST",
    "INVALID_JSON",
    "INVALID_PARENT_SPAN_ID",
    "INVALID_PROTOBUF",
    "INVALID_SPAN_ID",
    "INVALID_TIMESTAMPS",
    "INVALID_TRACE_ID",
    "INVALID_UTF8",
    "JSON",
    "NESTED_TOO_DEEP",
    "NOT_PROTOBUF",
    "NOT_TRACES",
    "PROTOBUF",
    "SPAN_TOO_LARGE",
    "Decoded",
    "Rejection",
    "UntypedDecodeError",
    "any_value",
    "attributes_dict",
    "attributes_json",
    "check_span",
    "decode_json",
    "decode_proto",
    "decode_untyped",
    "events_json",
    "links_json",
    "reject_bad_tenants",
    "split_by_trace",
]
