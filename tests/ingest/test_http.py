"""OTLP/HTTP gateway against the real local Kafka."""

from __future__ import annotations

import asyncio
import gzip
import zlib
from collections.abc import Callable

import aiohttp
import orjson
import pytest
from google.rpc import code_pb2, status_pb2
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ingest.server import Gateway
from llmobs.topics import (
    HEADER_DLQ_REASON,
    HEADER_RECEIVED_NS,
    HEADER_TENANT,
)

pytestmark = pytest.mark.integration

PROTOBUF = "application/x-protobuf"
TRACE_A = bytes.fromhex("5b8efff798038103d269b633813fc60c")
TRACE_B = bytes.fromhex("eee19b7ec3c1b174a5b1a2c3d4e5f607")
TRACE_C = bytes.fromhex("0123456789abcdef0123456789abcdef")

BuildRequest = Callable[..., ExportTraceServiceRequest]


def url(gateway: Gateway, path: str = "/v1/traces") -> str:
    return f"http://127.0.0.1:{gateway.http_port}{path}"


async def post(
    gateway: Gateway,
    body: bytes,
    content_type: str = PROTOBUF,
    **headers: str,
) -> tuple[int, bytes, dict[str, str]]:
    all_headers = {"Content-Type": content_type, **headers}
    async with (
        aiohttp.ClientSession(auto_decompress=False) as session,
        session.post(url(gateway), data=body, headers=all_headers) as response,
    ):
        return response.status, await response.read(), dict(response.headers)


def headers_of(message: object) -> dict[str, bytes]:
    return dict(message.headers() or [])  # type: ignore[attr-defined]


def sdk_spans(count: int) -> list[object]:
    """Finished spans of the real OpenTelemetry SDK, one trace."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "sdk-app"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("tests.ingest")
    with tracer.start_as_current_span("chat gpt-4o") as root:
        root.set_attribute("gen_ai.operation.name", "chat")
        for index in range(count - 1):
            with tracer.start_as_current_span(f"tool-{index}"):
                pass
    provider.shutdown()
    return list(memory.get_finished_spans())


async def test_real_http_exporter_gzip_with_api_key(
    start_gateway: Callable[..., object], read_topic: Callable[..., object]
) -> None:
    gateway: Gateway = await start_gateway(api_keys={"secret-key": "tenant-a"})
    spans = sdk_spans(3)
    exporter = OTLPSpanExporter(
        endpoint=url(gateway),
        headers={"Authorization": "Bearer secret-key"},
        compression=Compression.Gzip,
        timeout=10,
    )

    result = await asyncio.to_thread(exporter.export, spans)
    exporter.shutdown()

    assert result == SpanExportResult.SUCCESS
    messages = await read_topic(gateway.settings.input_topic, 1)
    assert len(messages) == 1
    trace_id = format(spans[0].context.trace_id, "032x")
    assert messages[0].key() == trace_id.encode()
    headers = headers_of(messages[0])
    assert headers[HEADER_TENANT] == b"tenant-a"
    assert int(headers[HEADER_RECEIVED_NS]) > 0
    request = ExportTraceServiceRequest.FromString(messages[0].value())
    got = sorted(
        s.name
        for rs in request.resource_spans
        for ss in rs.scope_spans
        for s in ss.spans
    )
    assert got == sorted(s.name for s in spans)
    service = request.resource_spans[0].resource.attributes
    assert any(
        kv.key == "service.name" and kv.value.string_value == "sdk-app"
        for kv in service
    )


async def test_protobuf_multi_trace_split_one_message_per_trace(
    start_gateway: Callable[..., object],
    read_topic: Callable[..., object],
    build_request: BuildRequest,
) -> None:
    gateway: Gateway = await start_gateway()
    request = build_request([TRACE_A, TRACE_B, TRACE_C], spans_per_trace=3)

    status, body, headers = await post(gateway, request.SerializeToString())

    assert status == 200
    assert headers["Content-Type"].startswith(PROTOBUF)
    assert ExportTraceServiceResponse.FromString(body) == ExportTraceServiceResponse()
    messages = await read_topic(gateway.settings.input_topic, 3)
    by_key = {m.key().decode(): m for m in messages}
    assert sorted(by_key) == sorted(t.hex() for t in (TRACE_A, TRACE_B, TRACE_C))
    for key, message in by_key.items():
        part = ExportTraceServiceRequest.FromString(message.value())
        assert part.resource_spans[0].resource == request.resource_spans[0].resource
        assert part.resource_spans[0].schema_url == request.resource_spans[0].schema_url
        scope = part.resource_spans[0].scope_spans[0]
        assert scope.scope.name == "test-scope"
        assert [s.trace_id.hex() for s in scope.spans] == [key] * 3
        # No API keys configured: the tenant is left to the decode stage.
        assert HEADER_TENANT not in headers_of(message)


async def test_json_request_and_json_answer(
    start_gateway: Callable[..., object], read_topic: Callable[..., object]
) -> None:
    gateway: Gateway = await start_gateway()
    doc = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [
                        {"key": "service.name", "value": {"stringValue": "js"}}
                    ]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "s"},
                        "spans": [
                            {
                                "traceId": TRACE_A.hex(),
                                "spanId": "00f067aa0ba902b7",
                                "name": "chat",
                                "kind": "SPAN_KIND_CLIENT",
                                "startTimeUnixNano": "1700000000000000000",
                                "endTimeUnixNano": "1700000000500000000",
                            }
                        ],
                    }
                ],
            }
        ]
    }

    status, body, headers = await post(gateway, orjson.dumps(doc), "application/json")

    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    assert orjson.loads(body) == {}
    [message] = await read_topic(gateway.settings.input_topic, 1)
    assert message.key() == TRACE_A.hex().encode()
    span = (
        ExportTraceServiceRequest.FromString(message.value())
        .resource_spans[0]
        .scope_spans[0]
        .spans[0]
    )
    assert span.trace_id == TRACE_A
    assert span.span_id == bytes.fromhex("00f067aa0ba902b7")
    assert span.end_time_unix_nano - span.start_time_unix_nano == 500_000_000


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_compressed_bodies(
    encoding: str,
    start_gateway: Callable[..., object],
    read_topic: Callable[..., object],
    build_request: BuildRequest,
) -> None:
    gateway: Gateway = await start_gateway()
    raw = build_request([TRACE_B]).SerializeToString()
    body = gzip.compress(raw) if encoding == "gzip" else zlib.compress(raw)

    status, _, _ = await post(gateway, body, **{"Content-Encoding": encoding})

    assert status == 200
    [message] = await read_topic(gateway.settings.input_topic, 1)
    assert message.value() == raw


async def test_every_member_of_a_multi_member_gzip_body_is_read(
    start_gateway: Callable[..., object],
    read_topic: Callable[..., object],
    build_request: BuildRequest,
) -> None:
    gateway: Gateway = await start_gateway()
    first = build_request([TRACE_A]).SerializeToString()
    second = build_request([TRACE_B]).SerializeToString()
    # Concatenated protobuf messages merge: the body is one two-trace request.
    body = gzip.compress(first) + gzip.compress(second)

    status, _, _ = await post(gateway, body, **{"Content-Encoding": "gzip"})

    assert status == 200
    messages = await read_topic(gateway.settings.input_topic, 2)
    assert {m.key() for m in messages} == {
        TRACE_A.hex().encode(),
        TRACE_B.hex().encode(),
    }


async def test_partial_success_and_dead_letter(
    start_gateway: Callable[..., object],
    read_topic: Callable[..., object],
    build_request: BuildRequest,
) -> None:
    gateway: Gateway = await start_gateway()
    request = build_request([TRACE_A], spans_per_trace=3)
    spans = request.resource_spans[0].scope_spans[0].spans
    spans[1].name = "poison!"
    spans[2].end_time_unix_nano = spans[2].start_time_unix_nano - 1
    body = request.SerializeToString().replace(b"poison!", b"poison\xff")

    status, answer, _ = await post(gateway, body)

    assert status == 200
    response = ExportTraceServiceResponse.FromString(answer)
    assert response.partial_success.rejected_spans == 2
    assert "invalid_utf8" in response.partial_success.error_message
    assert "invalid_timestamps" in response.partial_success.error_message
    [message] = await read_topic(gateway.settings.input_topic, 1)
    kept = ExportTraceServiceRequest.FromString(message.value())
    assert [s.name for s in kept.resource_spans[0].scope_spans[0].spans] == ["span-0-0"]
    dead = await read_topic(gateway.settings.dlq_topic, 2)
    reasons = sorted(headers_of(m)[HEADER_DLQ_REASON] for m in dead)
    assert reasons == [b"invalid_timestamps", b"invalid_utf8"]


async def test_spans_of_a_resource_with_a_bad_tenant_are_rejected(
    start_gateway: Callable[..., object],
    read_topic: Callable[..., object],
    build_request: BuildRequest,
) -> None:
    gateway: Gateway = await start_gateway()
    request = build_request([TRACE_A], spans_per_trace=1)
    bad = build_request([TRACE_B], spans_per_trace=2).resource_spans[0]
    bad.resource.attributes.add(key="tenant.id").value.string_value = "a b"
    request.resource_spans.append(bad)

    status, answer, _ = await post(gateway, request.SerializeToString())

    assert status == 200
    response = ExportTraceServiceResponse.FromString(answer)
    assert response.partial_success.rejected_spans == 2
    assert "invalid_tenant" in response.partial_success.error_message
    [message] = await read_topic(gateway.settings.input_topic, 1)
    assert message.key() == TRACE_A.hex().encode()
    [dead] = await read_topic(gateway.settings.dlq_topic, 1)
    assert headers_of(dead)[HEADER_DLQ_REASON] == b"invalid_tenant"


async def test_unsupported_content_type_is_415(
    start_gateway: Callable[..., object],
) -> None:
    gateway: Gateway = await start_gateway()

    status, body, _ = await post(gateway, b"hello", "text/plain")

    assert status == 415
    assert orjson.loads(body)["code"] == code_pb2.INVALID_ARGUMENT


async def test_oversize_body_is_413_compressed_or_not(
    start_gateway: Callable[..., object], build_request: BuildRequest
) -> None:
    gateway: Gateway = await start_gateway(max_request_bytes=4096)
    big = build_request([TRACE_A], spans_per_trace=200).SerializeToString()
    assert len(big) > 4096
    bomb = gzip.compress(big)
    assert len(bomb) < 4096

    plain_status, _, _ = await post(gateway, big)
    bomb_status, body, _ = await post(gateway, bomb, **{"Content-Encoding": "gzip"})

    assert plain_status == 413
    assert bomb_status == 413
    assert status_pb2.Status.FromString(body).code == code_pb2.INVALID_ARGUMENT


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (b"\x00\x01 not protobuf at all", {}),
        (b"not gzip", {"Content-Encoding": "gzip"}),
    ],
)
async def test_undecodable_is_400_with_status(
    body: bytes, headers: dict[str, str], start_gateway: Callable[..., object]
) -> None:
    gateway: Gateway = await start_gateway()

    status, answer, _ = await post(gateway, body, **headers)

    assert status == 400
    assert status_pb2.Status.FromString(answer).code == code_pb2.INVALID_ARGUMENT


async def test_undecodable_json_is_400_json_status(
    start_gateway: Callable[..., object],
) -> None:
    gateway: Gateway = await start_gateway()

    status, answer, _ = await post(gateway, b"{oops", "application/json")

    assert status == 400
    assert orjson.loads(answer)["code"] == code_pb2.INVALID_ARGUMENT


async def test_all_spans_rejected_is_400(
    start_gateway: Callable[..., object], build_request: BuildRequest
) -> None:
    gateway: Gateway = await start_gateway()
    request = build_request([bytes(16)])

    status, answer, _ = await post(gateway, request.SerializeToString())

    assert status == 400
    assert "invalid_trace_id" in status_pb2.Status.FromString(answer).message


async def test_unknown_api_key_is_401_when_required(
    start_gateway: Callable[..., object],
    read_topic: Callable[..., object],
    build_request: BuildRequest,
) -> None:
    gateway: Gateway = await start_gateway(
        api_keys={"k1": "tenant-1", "k2": "tenant-2"}, require_api_key=True
    )
    body = build_request([TRACE_C]).SerializeToString()

    missing, _, _ = await post(gateway, body)
    unknown, _, _ = await post(gateway, body, **{"x-api-key": "nope"})
    known, _, _ = await post(gateway, body, **{"x-api-key": "k2"})

    assert (missing, unknown, known) == (401, 401, 200)
    [message] = await read_topic(gateway.settings.input_topic, 1)
    assert headers_of(message)[HEADER_TENANT] == b"tenant-2"


async def test_kafka_unreachable_is_503_not_200(
    start_gateway: Callable[..., object], closed_port: int, build_request: BuildRequest
) -> None:
    gateway: Gateway = await start_gateway(
        kafka_bootstrap=f"127.0.0.1:{closed_port}", produce_timeout_s=1.0
    )

    status, answer, headers = await post(
        gateway, build_request([TRACE_A]).SerializeToString()
    )

    assert status == 503
    assert headers["Retry-After"] == str(gateway.settings.retry_after_s)
    assert status_pb2.Status.FromString(answer).code == code_pb2.UNAVAILABLE


async def test_inflight_cap_is_429(
    start_gateway: Callable[..., object], closed_port: int, build_request: BuildRequest
) -> None:
    gateway: Gateway = await start_gateway(
        kafka_bootstrap=f"127.0.0.1:{closed_port}",
        produce_timeout_s=3.0,
        max_inflight_bytes=100,
    )
    body = build_request([TRACE_A]).SerializeToString()
    first = asyncio.create_task(post(gateway, body))
    for _ in range(100):
        if gateway.producer.inflight_bytes:
            break
        await asyncio.sleep(0.02)

    second_status, _, headers = await post(gateway, body)
    first_status, _, _ = await first

    assert second_status == 429
    assert "Retry-After" in headers
    assert first_status == 503


async def test_healthz_and_metrics(
    start_gateway: Callable[..., object], build_request: BuildRequest
) -> None:
    gateway: Gateway = await start_gateway()
    await post(gateway, build_request([TRACE_A]).SerializeToString())
    await post(gateway, b"junk", "text/plain")

    async with aiohttp.ClientSession() as session:
        async with session.get(url(gateway, "/healthz")) as response:
            health = response.status
        async with session.get(url(gateway, "/metrics")) as response:
            metrics = await response.text()
            content_type = response.headers["Content-Type"]

    assert health == 200
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    assert 'llmobs_gateway_requests_total{transport="http",status="200"} 1' in metrics
    assert 'llmobs_gateway_requests_total{transport="http",status="415"} 1' in metrics
    assert "llmobs_gateway_spans_accepted_total 2" in metrics
    assert "# TYPE llmobs_gateway_inflight_bytes gauge" in metrics


async def test_stop_lets_inflight_request_finish(
    start_gateway: Callable[..., object], closed_port: int, build_request: BuildRequest
) -> None:
    gateway: Gateway = await start_gateway(
        kafka_bootstrap=f"127.0.0.1:{closed_port}", produce_timeout_s=1.0
    )
    pending = asyncio.create_task(
        post(gateway, build_request([TRACE_B]).SerializeToString())
    )
    for _ in range(100):
        if gateway.producer.inflight_bytes:
            break
        await asyncio.sleep(0.02)

    await gateway.stop()
    status, _, _ = await pending

    # The request got its real answer instead of a dropped connection.
    assert status == 503
