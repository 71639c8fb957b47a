"""Decode stage: one input message in, span batches and dead letters out."""

from __future__ import annotations

import orjson
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.trace.v1 import trace_pb2
from otlp_shapes import request_opening_with_brace

import schemas
import streams.decode as decode_module
from llmobs import otlp, synthetic, topics
from streams.decode import Source, decode_message

SOURCE = Source("otlp_spans", 2, 41, 1_700_000_000_000)
CODEC = schemas.codec(schemas.SPAN_BATCH)


def decode_all(value: bytes, headers: dict[str, bytes] | None = None):
    decoded = decode_message(value, headers, SOURCE)
    batches = {key: CODEC.decode(data) for key, data in decoded.batches}
    return decoded, batches


def test_unkeyed_batch_of_many_traces_is_split_per_trace() -> None:
    traces = [synthetic.llm_trace(calls=2) for _ in range(3)]
    value = synthetic.merge(traces).SerializeToString()

    decoded, batches = decode_all(value)

    expected = {
        t.resource_spans[0].scope_spans[0].spans[0].trace_id.hex() for t in traces
    }
    assert set(batches) == expected
    assert decoded.spans == 9
    assert not decoded.dead_letters
    for trace_id, batch in batches.items():
        assert batch["trace_id"] == trace_id
        assert len(batch["spans"]) == 3
        assert batch["source"] == "otlp_spans[2] 41"


def test_span_proto_is_kept_byte_for_byte() -> None:
    request = synthetic.llm_trace(calls=1)
    original = request.resource_spans[0].scope_spans[0].spans[1]

    _, batches = decode_all(request.SerializeToString())

    (batch,) = batches.values()
    kept = trace_pb2.Span.FromString(batch["spans"][1]["span_proto"])
    assert kept == original
    resource = batch["resources"][batch["spans"][1]["resource_index"]]
    assert resource["service_name"] == "bench-app"


def test_genai_fields_and_attributes_are_normalized() -> None:
    request = synthetic.llm_trace(calls=1)
    chat = request.resource_spans[0].scope_spans[0].spans[1]
    want_input = next(
        a.value.int_value
        for a in chat.attributes
        if a.key == "gen_ai.usage.input_tokens"
    )

    _, batches = decode_all(request.SerializeToString())

    span = next(iter(batches.values()))["spans"][1]
    assert span["genai"]["operation"] == "chat"
    assert span["genai"]["input_tokens"] == want_input
    assert (
        orjson.loads(span["attributes_json"])["gen_ai.usage.input_tokens"] == want_input
    )
    assert span["kind"] == "SPAN_KIND_CLIENT"


def test_tenant_comes_from_header_then_resource_then_default() -> None:
    with_resource = synthetic.llm_trace(calls=1, tenant="acme").SerializeToString()
    plain = synthetic.llm_trace(calls=1).SerializeToString()

    _, from_header = decode_all(with_resource, {topics.HEADER_TENANT: b"blue"})
    _, from_resource = decode_all(with_resource)
    _, fallback = decode_all(plain)

    assert next(iter(from_header.values()))["tenant"] == "blue"
    assert next(iter(from_resource.values()))["tenant"] == "acme"
    assert next(iter(fallback.values()))["tenant"] == "default"


def test_received_time_comes_from_the_gateway_header() -> None:
    value = synthetic.llm_trace(calls=1).SerializeToString()

    _, batches = decode_all(value, {topics.HEADER_RECEIVED_NS: b"123456789"})

    assert next(iter(batches.values()))["received_unix_nano"] == 123456789


def test_otlp_json_with_hex_ids_is_read() -> None:
    request = synthetic.llm_trace(calls=1)
    trace_id = request.resource_spans[0].scope_spans[0].spans[0].trace_id

    _, batches = decode_all(synthetic.otlp_json(request))

    assert list(batches) == [trace_id.hex()]


def test_garbage_goes_to_dead_letters_with_reason() -> None:
    decoded, batches = decode_all(b"\xff\x00garbage that is not protobuf")

    assert not batches
    (letter,) = decoded.dead_letters
    assert letter.reason == otlp.NOT_PROTOBUF
    headers = dict(letter.headers(SOURCE))
    assert headers[topics.HEADER_DLQ_PARTITION] == b"2"
    assert headers[topics.HEADER_DLQ_OFFSET] == b"41"


def test_metrics_request_on_the_topic_is_dead_lettered() -> None:
    metrics = ExportMetricsServiceRequest()
    metric = metrics.resource_metrics.add().scope_metrics.add().metrics.add()
    metric.name = "http.server.duration"
    metric.gauge.data_points.add().as_double = 1.5

    decoded, batches = decode_all(metrics.SerializeToString())

    assert not batches
    assert decoded.dead_letters


def test_empty_message_is_dead_lettered() -> None:
    decoded, batches = decode_all(b"")

    assert not batches
    assert [d.reason for d in decoded.dead_letters] == [otlp.EMPTY_REQUEST]


def test_one_bad_span_does_not_lose_the_others() -> None:
    request = synthetic.llm_trace(calls=2)
    spans = request.resource_spans[0].scope_spans[0].spans
    spans[2].end_time_unix_nano = spans[2].start_time_unix_nano - 1

    decoded, batches = decode_all(request.SerializeToString())

    assert sum(len(b["spans"]) for b in batches.values()) == 2
    assert [d.reason for d in decoded.dead_letters] == [otlp.INVALID_TIMESTAMPS]


def test_every_genai_span_is_priced_and_counted() -> None:
    request = synthetic.llm_trace(calls=3)

    decoded, batches = decode_all(request.SerializeToString())

    (batch,) = batches.values()
    agent, *calls = batch["spans"]
    assert agent["cost"]["status"] == "not_llm_call"
    for call in calls:
        cost = call["cost"]
        assert cost["status"] == "priced", cost["match"]
        assert cost["currency"] == "USD"
        assert cost["total_cost"] > 0
    assert decoded.cost_statuses == {"priced": 3, "not_llm_call": 1}
    assert not decoded.unknown_models


def test_a_trace_too_big_for_one_record_travels_as_several(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    request = synthetic.llm_trace(calls=9)
    span_ids = {s.span_id.hex() for s in request.resource_spans[0].scope_spans[0].spans}
    one_span_record = len(
        decode_message(
            synthetic.llm_trace(calls=0).SerializeToString(), None, SOURCE
        ).batches[0][1]
    )
    monkeypatch.setattr(decode_module, "MAX_RECORD_BYTES", one_span_record * 3)

    decoded = decode_message(request.SerializeToString(), None, SOURCE)

    assert len(decoded.batches) > 1
    assert all(len(v) <= one_span_record * 3 for _, v in decoded.batches)
    kept = [s["span_id"] for _, v in decoded.batches for s in CODEC.decode(v)["spans"]]
    assert sorted(kept) == sorted(span_ids)
    assert not decoded.dead_letters


def test_a_single_span_too_big_is_dead_lettered_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    request = synthetic.llm_trace(calls=2)
    big = request.resource_spans[0].scope_spans[0].spans[1]
    big.attributes.append(synthetic.kv("blob", "x" * 50_000))
    monkeypatch.setattr(decode_module, "MAX_RECORD_BYTES", 40_000)

    decoded = decode_message(request.SerializeToString(), None, SOURCE)

    kept = [s["span_id"] for _, v in decoded.batches for s in CODEC.decode(v)["spans"]]
    assert len(kept) == 2
    assert big.span_id.hex() not in kept
    (letter,) = decoded.dead_letters
    assert letter.reason == "span_too_large"
    replayable = ExportTraceServiceRequest.FromString(letter.value)
    assert replayable.resource_spans[0].scope_spans[0].spans[0] == big
    assert replayable.resource_spans[0].resource == request.resource_spans[0].resource


def test_protobuf_whose_second_byte_is_a_brace_is_not_read_as_json() -> None:
    request = request_opening_with_brace()

    decoded, batches = decode_all(request.SerializeToString())

    assert not decoded.dead_letters
    assert decoded.spans == 1
    (batch,) = batches.values()
    assert (
        batch["trace_id"]
        == request.resource_spans[0].scope_spans[0].spans[0].trace_id.hex()
    )


def test_json_after_a_leading_newline_is_still_json() -> None:
    value = b"\n" + synthetic.otlp_json(synthetic.llm_trace(calls=1))

    decoded, _ = decode_all(value)

    assert not decoded.dead_letters
    assert decoded.spans == 2


def test_a_resource_with_a_bad_tenant_is_dead_lettered_alone() -> None:
    good = synthetic.llm_trace(calls=1, tenant="acme")
    bad = synthetic.llm_trace(calls=2, tenant="x" * 5000)
    value = synthetic.merge([good, bad]).SerializeToString()

    decoded, batches = decode_all(value)

    assert [b["tenant"] for b in batches.values()] == ["acme"]
    (dead,) = decoded.dead_letters
    assert dead.reason == "invalid_tenant"
    assert dead.spans == 3
    replayable = ExportTraceServiceRequest.FromString(dead.value)
    assert len(replayable.resource_spans[0].scope_spans[0].spans) == 3


def test_a_bad_tenant_header_sets_the_whole_message_aside() -> None:
    value = synthetic.llm_trace(calls=1, tenant="acme").SerializeToString()

    decoded, batches = decode_all(value, {topics.HEADER_TENANT: b"a\r\nb"})

    assert batches == {}
    (dead,) = decoded.dead_letters
    assert (dead.reason, dead.spans, dead.value) == ("invalid_tenant", 2, value)


def test_a_message_the_collector_marks_as_metrics_is_set_aside_as_such() -> None:
    metrics = ExportMetricsServiceRequest()
    metrics.resource_metrics.add().scope_metrics.add().metrics.add(name="m")
    value = metrics.SerializeToString()

    decoded, batches = decode_all(value, {topics.HEADER_SIGNAL: b"metrics"})

    assert not batches
    (dead,) = decoded.dead_letters
    assert (dead.reason, dead.value) == ("not_traces", value)
    assert "'metrics'" in dead.detail


def test_a_message_the_collector_marks_as_traces_is_read() -> None:
    value = synthetic.llm_trace(calls=1).SerializeToString()

    decoded, batches = decode_all(value, {topics.HEADER_SIGNAL: b"traces"})

    assert len(batches) == 1
    assert not decoded.dead_letters


def test_nul_in_a_service_name_is_replaced() -> None:
    request = synthetic.llm_trace(calls=1, service_name="check\x00out")

    _, batches = decode_all(request.SerializeToString())

    (batch,) = batches.values()
    assert batch["resources"][0]["service_name"] == "check\ufffdout"
