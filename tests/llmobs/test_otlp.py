"""Unit tests of llmobs.otlp: every kind of bad input and the happy paths."""

from __future__ import annotations

import base64
import json
import os
import time

import orjson
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from llmobs.errors import DecodeError
from llmobs.otlp import (
    DUPLICATE_SPAN,
    EMPTY_REQUEST,
    INVALID_JSON,
    INVALID_PARENT_SPAN_ID,
    INVALID_SPAN_ID,
    INVALID_TIMESTAMPS,
    INVALID_TRACE_ID,
    INVALID_UTF8,
    JSON,
    NESTED_TOO_DEEP,
    NOT_PROTOBUF,
    NOT_TRACES,
    SPAN_TOO_LARGE,
    any_value,
    attributes_dict,
    attributes_json,
    decode_json,
    decode_proto,
    events_json,
    links_json,
    split_by_trace,
)
from llmobs.otlp.decode import other_signal
from llmobs.otlp.validate import MAX_SPAN_BYTES, check_span

TRACE_A = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
TRACE_B = bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736")
START_NS = 1_700_000_000_000_000_000


def span_id(n: int) -> bytes:
    return n.to_bytes(8, "big")


def make_request(
    spans: list[dict[str, object]], resources: int = 1, scopes: int = 1
) -> ExportTraceServiceRequest:
    """Spans dealt round-robin over ``resources`` x ``scopes`` containers."""
    request = ExportTraceServiceRequest()
    containers = []
    for r in range(resources):
        rs = request.resource_spans.add(schema_url=f"https://schema/r{r}")
        attr = rs.resource.attributes.add(key="service.name")
        attr.value.string_value = f"svc-{r}"
        for s in range(scopes):
            ss = rs.scope_spans.add(schema_url=f"https://schema/s{s}")
            ss.scope.name = f"scope-{r}-{s}"
            ss.scope.version = "1.0"
            containers.append(ss)
    for index, fields in enumerate(spans):
        values: dict[str, object] = {
            "trace_id": TRACE_A,
            "span_id": span_id(index + 1),
            "name": f"span-{index}",
            "start_time_unix_nano": START_NS,
            "end_time_unix_nano": START_NS + 1000,
        }
        values.update(fields)
        containers[index % len(containers)].spans.add(**values)
    return request


def all_spans(request: ExportTraceServiceRequest) -> list[Span]:
    return [
        s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans
    ]


def test_valid_protobuf_is_kept_whole() -> None:
    request = make_request([{}, {}, {"parent_span_id": span_id(1)}])

    decoded = decode_proto(request.SerializeToString())

    assert decoded.span_count == 3
    assert decoded.rejected == []
    assert decoded.request == request


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"trace_id": bytes(16)}, INVALID_TRACE_ID),
        ({"trace_id": b"\x01" * 8}, INVALID_TRACE_ID),
        ({"trace_id": b"\x01" * 32}, INVALID_TRACE_ID),
        ({"trace_id": b""}, INVALID_TRACE_ID),
        ({"span_id": bytes(8)}, INVALID_SPAN_ID),
        ({"span_id": b"\x01" * 16}, INVALID_SPAN_ID),
        ({"span_id": b""}, INVALID_SPAN_ID),
        ({"parent_span_id": b"\x01" * 4}, INVALID_PARENT_SPAN_ID),
        ({"start_time_unix_nano": 0}, INVALID_TIMESTAMPS),
        ({"end_time_unix_nano": START_NS - 1}, INVALID_TIMESTAMPS),
        ({"end_time_unix_nano": 2**63}, INVALID_TIMESTAMPS),
        # A clock never set, and a clock a week ahead.
        ({"start_time_unix_nano": 1, "end_time_unix_nano": 2}, INVALID_TIMESTAMPS),
        (
            {"end_time_unix_nano": time.time_ns() + 7 * 86_400 * 10**9},
            INVALID_TIMESTAMPS,
        ),
    ],
)
def test_invalid_span_is_rejected_and_others_kept(
    fields: dict[str, object], reason: str
) -> None:
    request = make_request([{}, fields, {}])

    decoded = decode_proto(request.SerializeToString())

    assert decoded.span_count == 2
    assert [s.name for s in all_spans(decoded.request)] == ["span-0", "span-2"]
    assert [(r.reason, r.spans) for r in decoded.rejected] == [(reason, 1)]
    replay = ExportTraceServiceRequest.FromString(decoded.rejected[0].payload)
    assert [s.name for s in all_spans(replay)] == ["span-1"]
    assert replay.resource_spans[0].resource == request.resource_spans[0].resource
    assert replay.resource_spans[0].scope_spans[0].scope.name == "scope-0-0"


def test_end_time_may_be_up_to_a_day_ahead_of_the_clock() -> None:
    now_ns = START_NS + 10**9
    day_ns = 86_400 * 10**9
    span = Span(
        trace_id=b"\x01" * 16,
        span_id=b"\x02" * 8,
        start_time_unix_nano=START_NS,
        end_time_unix_nano=now_ns + day_ns,
    )

    assert check_span(span, now_ns=now_ns) is None
    span.end_time_unix_nano += 1
    assert check_span(span, now_ns=now_ns) == (
        INVALID_TIMESTAMPS,
        "end time is more than a day ahead",
    )


def test_end_equal_to_start_is_valid() -> None:
    request = make_request([{"end_time_unix_nano": START_NS}])

    assert decode_proto(request.SerializeToString()).span_count == 1


def test_duplicate_span_keeps_the_first() -> None:
    request = make_request(
        [
            {"name": "first", "span_id": span_id(7)},
            {"name": "again", "span_id": span_id(7)},
        ]
    )

    decoded = decode_proto(request.SerializeToString())

    assert [s.name for s in all_spans(decoded.request)] == ["first"]
    assert [(r.reason, r.spans) for r in decoded.rejected] == [(DUPLICATE_SPAN, 1)]


def test_same_span_id_in_other_trace_is_not_a_duplicate() -> None:
    request = make_request(
        [{"span_id": span_id(7)}, {"span_id": span_id(7), "trace_id": TRACE_B}]
    )

    assert decode_proto(request.SerializeToString()).span_count == 2


def test_invalid_utf8_rejects_only_that_span() -> None:
    request = make_request(
        [{"name": "good-1"}, {"name": "poison!"}, {"name": "good-2"}], resources=2
    )
    data = request.SerializeToString()
    bad = data.replace(b"poison!", b"poison\xff")
    assert bad != data
    with pytest.raises(Exception):  # noqa: B017 - the premise: protobuf refuses it
        ExportTraceServiceRequest.FromString(bad)

    decoded = decode_proto(bad)

    assert sorted(s.name for s in all_spans(decoded.request)) == ["good-1", "good-2"]
    assert decoded.span_count == 2
    assert [(r.reason, r.spans) for r in decoded.rejected] == [(INVALID_UTF8, 1)]
    # The resources and scopes of the kept spans survive the salvage.
    assert {
        rs.resource.attributes[0].value.string_value
        for rs in decoded.request.resource_spans
    } == {"svc-0"}
    assert decoded.request.resource_spans[0].schema_url == "https://schema/r0"
    assert decoded.request.resource_spans[0].scope_spans[0].scope.name == "scope-0-0"
    # The dead letter holds just the bad span, still in its resource and scope.
    payload = decoded.rejected[0].payload
    assert b"poison\xff" in payload
    assert b"good-1" not in payload and b"svc-1" in payload


def test_invalid_utf8_in_resource_rejects_its_spans_only() -> None:
    request = make_request([{"name": "a"}, {"name": "b"}, {"name": "c"}], resources=2)
    request.resource_spans[1].resource.attributes.add(
        key="k"
    ).value.string_value = "zz!"
    bad = request.SerializeToString().replace(b"zz!", b"zz\xfe")

    decoded = decode_proto(bad)

    assert sorted(s.name for s in all_spans(decoded.request)) == ["a", "c"]
    assert [(r.reason, r.spans) for r in decoded.rejected] == [(INVALID_UTF8, 1)]


def nested(levels: int) -> AnyValue:
    """A value ``levels`` kvlists deep."""
    value = AnyValue(string_value="leaf")
    for _ in range(levels):
        outer = AnyValue()
        outer.kvlist_value.values.add(key="k").value.CopyFrom(value)
        value = outer
    return value


def test_values_nested_past_the_decoders_limit_reject_only_that_span() -> None:
    request = make_request([{"name": "a"}, {"name": "deep"}, {"name": "c"}])
    deep = next(s for s in all_spans(request) if s.name == "deep")
    deep.attributes.add(key="deep").value.CopyFrom(nested(40))

    decoded = decode_proto(request.SerializeToString())

    assert sorted(s.name for s in all_spans(decoded.request)) == ["a", "c"]
    assert [(r.reason, r.spans) for r in decoded.rejected] == [(NESTED_TOO_DEEP, 1)]


def test_values_nested_within_the_limit_are_kept() -> None:
    request = make_request([{"name": "nested"}])
    span = all_spans(request)[0]
    span.attributes.add(key="nested").value.CopyFrom(nested(20))

    decoded = decode_proto(request.SerializeToString())

    assert decoded.span_count == 1
    assert decoded.rejected == []


def test_a_span_too_large_to_keep_is_refused_where_the_sender_hears_it() -> None:
    request = make_request([{"name": "big"}, {"name": "fits"}])
    big, fits = all_spans(request)
    big.attributes.add(key="prompt").value.string_value = "x" * MAX_SPAN_BYTES
    fits.attributes.add(key="prompt").value.string_value = "x" * (MAX_SPAN_BYTES // 2)

    decoded = decode_proto(request.SerializeToString())

    assert [s.name for s in all_spans(decoded.request)] == ["fits"]
    assert [(r.reason, r.spans) for r in decoded.rejected] == [(SPAN_TOO_LARGE, 1)]


def test_invalid_utf8_and_invalid_ids_in_one_request() -> None:
    request = make_request([{"name": "bad!"}, {"trace_id": bytes(16)}, {"name": "ok"}])
    bad = request.SerializeToString().replace(b"bad!", b"bad\xc0")

    decoded = decode_proto(bad)

    assert [s.name for s in all_spans(decoded.request)] == ["ok"]
    assert sorted(r.reason for r in decoded.rejected) == [
        INVALID_TRACE_ID,
        INVALID_UTF8,
    ]
    assert decoded.rejected_spans == 2


def test_metrics_request_is_rejected() -> None:
    metrics = ExportMetricsServiceRequest()
    rm = metrics.resource_metrics.add()
    rm.resource.attributes.add(key="service.name").value.string_value = "svc"
    sm = rm.scope_metrics.add()
    sm.scope.name = "meter"
    gauge = sm.metrics.add(name="gen_ai.client.token.usage", unit="{token}")
    gauge.gauge.data_points.add(time_unix_nano=START_NS, as_int=42)
    total = sm.metrics.add(name="requests", description="count")
    total.sum.data_points.add(time_unix_nano=START_NS, as_double=1.5)

    with pytest.raises(DecodeError) as caught:
        decode_proto(metrics.SerializeToString())

    assert caught.value.reason == NOT_TRACES
    assert "metrics" in caught.value.detail


def test_logs_request_is_named_as_logs() -> None:
    logs = ExportLogsServiceRequest()
    records = logs.resource_logs.add().scope_logs.add().log_records
    records.add(time_unix_nano=START_NS).body.string_value = "user signed in"
    records.add(observed_time_unix_nano=START_NS, severity_text="WARN")

    with pytest.raises(DecodeError) as caught:
        decode_proto(logs.SerializeToString())

    assert (caught.value.reason, caught.value.detail) == (
        NOT_TRACES,
        "an OTLP logs request, not traces",
    )


@pytest.mark.parametrize(
    ("doc", "signal"),
    [
        ({"resourceMetrics": [{"scopeMetrics": []}]}, "metrics"),
        ({"resource_logs": []}, "logs"),
    ],
)
def test_otlp_json_of_another_signal_is_named(doc: dict, signal: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_json(json.dumps(doc).encode())

    assert (caught.value.reason, caught.value.detail) == (
        NOT_TRACES,
        f"an OTLP {signal} request, not traces",
    )


def test_a_trace_request_is_never_taken_for_another_signal() -> None:
    request = make_request([{}, {}])

    assert other_signal(request.SerializeToString()) is None


@pytest.mark.parametrize("seed", range(20))
def test_random_bytes_raise_decode_error_or_keep_nothing(seed: int) -> None:
    data = os.urandom(64 + seed)

    try:
        decoded = decode_proto(data)
    except DecodeError as exc:
        assert exc.reason in (NOT_PROTOBUF, EMPTY_REQUEST)
        return
    # Random bytes that happen to be well-formed still yield no valid span.
    assert decoded.span_count == 0
    assert decoded.rejected


@pytest.mark.parametrize("data", [b"hello, world", b"\xff\xff\xff", b"\x0a\x05ab"])
def test_non_protobuf_raises(data: bytes) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_proto(data)

    assert caught.value.reason == NOT_PROTOBUF


@pytest.mark.parametrize(
    "data",
    [b"", ExportTraceServiceRequest(resource_spans=[{}]).SerializeToString()],
)
def test_empty_request(data: bytes) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_proto(data)

    assert caught.value.reason == EMPTY_REQUEST


def json_span(**fields: object) -> dict[str, object]:
    span: dict[str, object] = {
        "traceId": TRACE_A.hex(),
        "spanId": span_id(1).hex(),
        "name": "chat",
        "startTimeUnixNano": str(START_NS),
        "endTimeUnixNano": str(START_NS + 5),
    }
    span.update(fields)
    return span


def json_request(*spans: dict[str, object]) -> bytes:
    return orjson.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {
                        "attributes": [
                            {"key": "service.name", "value": {"stringValue": "svc"}}
                        ]
                    },
                    "schemaUrl": "https://schema/r",
                    "scopeSpans": [
                        {
                            "scope": {"name": "sc"},
                            "schemaUrl": "https://schema/s",
                            "spans": list(spans),
                        }
                    ],
                }
            ]
        }
    )


def test_json_hex_ids_decode_to_raw_bytes() -> None:
    data = json_request(
        json_span(
            parentSpanId=span_id(9).hex(),
            links=[{"traceId": TRACE_B.hex(), "spanId": span_id(3).hex()}],
        )
    )

    decoded = decode_json(data)

    span = all_spans(decoded.request)[0]
    assert span.trace_id == TRACE_A and len(span.trace_id) == 16
    assert span.span_id == span_id(1) and len(span.span_id) == 8
    assert span.parent_span_id == span_id(9)
    assert span.links[0].trace_id == TRACE_B
    assert span.links[0].span_id == span_id(3)
    assert decoded.request.resource_spans[0].schema_url == "https://schema/r"
    assert (
        decoded.request.resource_spans[0].scope_spans[0].schema_url
        == "https://schema/s"
    )


def test_json_snake_case_keys_and_int64_forms() -> None:
    span = {
        "trace_id": TRACE_A.hex(),
        "span_id": span_id(2).hex(),
        "parent_span_id": "",
        "name": "snake",
        "start_time_unix_nano": START_NS,
        "end_time_unix_nano": str(START_NS + 1),
        "attributes": [{"key": "n", "value": {"int_value": "12345678901234"}}],
    }
    data = orjson.dumps({"resource_spans": [{"scope_spans": [{"spans": [span]}]}]})

    decoded = decode_json(data)

    got = all_spans(decoded.request)[0]
    assert got.span_id == span_id(2)
    assert got.start_time_unix_nano == START_NS
    assert got.end_time_unix_nano == START_NS + 1
    assert attributes_dict(got.attributes) == {"n": 12345678901234}


@pytest.mark.parametrize(
    ("kind", "status", "want_kind", "want_status"),
    [
        (
            "SPAN_KIND_CLIENT",
            "STATUS_CODE_ERROR",
            Span.SPAN_KIND_CLIENT,
            Status.STATUS_CODE_ERROR,
        ),
        (3, 2, Span.SPAN_KIND_CLIENT, Status.STATUS_CODE_ERROR),
        (2, "STATUS_CODE_OK", Span.SPAN_KIND_SERVER, Status.STATUS_CODE_OK),
    ],
)
def test_json_enums_by_name_or_number(
    kind: object, status: object, want_kind: int, want_status: int
) -> None:
    data = json_request(json_span(kind=kind, status={"code": status}))

    got = all_spans(decode_json(data).request)[0]

    assert got.kind == want_kind
    assert got.status.code == want_status


def test_json_bad_span_rejected_others_kept() -> None:
    data = json_request(
        json_span(name="good"),
        json_span(spanId=span_id(2).hex(), startTimeUnixNano="not-a-number"),
        json_span(spanId=span_id(3).hex(), traceId="00" * 16),
    )

    decoded = decode_json(data)

    assert [s.name for s in all_spans(decoded.request)] == ["good"]
    reasons = sorted((r.reason, r.spans) for r in decoded.rejected)
    assert reasons == [(INVALID_JSON, 1), (INVALID_TRACE_ID, 1)]
    json_rejection = next(r for r in decoded.rejected if r.reason == INVALID_JSON)
    assert json_rejection.content_type == JSON
    replay = orjson.loads(json_rejection.payload)
    spans = replay["resourceSpans"][0]["scopeSpans"][0]["spans"]
    assert [s["startTimeUnixNano"] for s in spans] == ["not-a-number"]


@pytest.mark.parametrize(
    "bad", [b"bad\\ud800text", b"bad\xfftext"], ids=["lone-surrogate", "raw-byte"]
)
def test_json_bad_utf8_in_one_string_rejects_only_that_span(bad: bytes) -> None:
    data = json_request(
        json_span(name="good"), json_span(spanId=span_id(2).hex(), name="POISON")
    ).replace(b"POISON", bad)

    decoded = decode_json(data)

    assert [s.name for s in all_spans(decoded.request)] == ["good"]
    (rejection,) = decoded.rejected
    assert (rejection.reason, rejection.spans) == (INVALID_UTF8, 1)
    # Valid JSON, its bad string escaped: the standard parser reads it back.
    replay = json.loads(rejection.payload)
    (span,) = replay["resourceSpans"][0]["scopeSpans"][0]["spans"]
    assert span["spanId"] == span_id(2).hex()


def test_json_attribute_nested_past_the_limit_rejects_only_its_span() -> None:
    value: dict[str, object] = {"stringValue": "leaf"}
    for _ in range(300):
        value = {"arrayValue": {"values": [value]}}
    deep = json_span(
        spanId=span_id(2).hex(), attributes=[{"key": "deep", "value": value}]
    )
    data = json.dumps(orjson.loads(json_request(json_span(name="good")))).encode()
    doc = json.loads(data)
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"].append(deep)

    decoded = decode_json(json.dumps(doc).encode())

    assert [s.name for s in all_spans(decoded.request)] == ["good"]
    (rejection,) = decoded.rejected
    assert (rejection.reason, rejection.spans) == (INVALID_JSON, 1)
    assert json.loads(rejection.payload)["resourceSpans"][0]["scopeSpans"]


def test_json_wrong_length_hex_id_is_rejected() -> None:
    data = json_request(json_span(traceId="abcd"), json_span(spanId=span_id(5).hex()))

    decoded = decode_json(data)

    assert decoded.span_count == 1
    assert [r.reason for r in decoded.rejected] == [INVALID_TRACE_ID]


@pytest.mark.parametrize(
    "data", [b"{not json", b"[1, 2]", b'{"spans": []}', b"\xff\xfe"]
)
def test_json_not_a_trace_request(data: bytes) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_json(data)

    assert caught.value.reason == INVALID_JSON


@pytest.mark.parametrize("data", [b"{}", b'{"resourceSpans": []}'])
def test_json_empty_request(data: bytes) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_json(data)

    assert caught.value.reason == EMPTY_REQUEST


def test_split_by_trace_single_trace_is_returned_as_is() -> None:
    request = make_request([{}, {}])

    split = split_by_trace(request)

    assert list(split) == [TRACE_A.hex()]
    assert split[TRACE_A.hex()] is request


def test_split_by_trace_preserves_resources_and_scopes() -> None:
    spans = [{"trace_id": TRACE_A if i % 3 else TRACE_B} for i in range(12)]
    request = make_request(spans, resources=2, scopes=2)

    split = split_by_trace(request)

    assert sorted(split) == sorted([TRACE_A.hex(), TRACE_B.hex()])
    assert all(len(key) == 32 and key == key.lower() for key in split)
    for trace_id, part in split.items():
        for rs in part.resource_spans:
            original = next(
                o for o in request.resource_spans if o.resource == rs.resource
            )
            assert rs.schema_url == original.schema_url
            for ss in rs.scope_spans:
                source = next(o for o in original.scope_spans if o.scope == ss.scope)
                assert ss.schema_url == source.schema_url
                assert all(s.trace_id.hex() == trace_id for s in ss.spans)
                assert [
                    s for s in source.spans if s.trace_id.hex() == trace_id
                ] == list(ss.spans)
    total = sum(len(all_spans(part)) for part in split.values())
    assert total == 12


def test_any_value_and_attribute_json() -> None:
    value = AnyValue()
    value.kvlist_value.values.add(key="s").value.string_value = "x"
    value.kvlist_value.values.add(key="b").value.bytes_value = b"\x00\x01"
    inner = value.kvlist_value.values.add(key="list").value.array_value
    inner.values.add().int_value = 3
    inner.values.add().double_value = 1.5
    inner.values.add().bool_value = True
    inner.values.add()
    kvs = [KeyValue(key="map", value=value)]

    assert any_value(value) == {
        "s": "x",
        "b": b"\x00\x01",
        "list": [3, 1.5, True, None],
    }
    assert orjson.loads(attributes_json(kvs)) == {
        "map": {
            "s": "x",
            "b": base64.b64encode(b"\x00\x01").decode(),
            "list": [3, 1.5, True, None],
        }
    }


def test_events_and_links_json() -> None:
    span = Span()
    event = span.events.add(time_unix_nano=START_NS, name="gen_ai.choice")
    event.attributes.add(key="index").value.int_value = 0
    span.links.add(trace_id=TRACE_B, span_id=span_id(4))

    assert orjson.loads(events_json(span)) == [
        {
            "time_unix_nano": START_NS,
            "name": "gen_ai.choice",
            "attributes": {"index": 0},
        }
    ]
    assert orjson.loads(links_json(span)) == [
        {"trace_id": TRACE_B.hex(), "span_id": span_id(4).hex(), "attributes": {}}
    ]
