"""OTLP/gRPC gateway against the real local Kafka."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ingest.server import Gateway
from llmobs.topics import HEADER_DLQ_REASON, HEADER_TENANT

pytestmark = pytest.mark.integration

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
TRACE_A = bytes.fromhex("11112222333344445555666677778888")
TRACE_B = bytes.fromhex("99990000aaaabbbbccccddddeeeeffff")

BuildRequest = Callable[..., ExportTraceServiceRequest]


def headers_of(message: object) -> dict[str, bytes]:
    return dict(message.headers() or [])  # type: ignore[attr-defined]


def two_traces() -> list[ReadableSpan]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "grpc-app"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("tests.ingest.grpc")
    for name in ("first", "second"):
        with tracer.start_as_current_span(name), tracer.start_as_current_span("child"):
            pass
    provider.shutdown()
    return list(memory.get_finished_spans())


async def call_export(
    gateway: Gateway,
    body: bytes,
    metadata: tuple[tuple[str, str], ...] = (),
    compression: grpc.Compression | None = None,
) -> bytes:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.grpc_port}") as channel:
        export = channel.unary_unary(EXPORT)
        return await export(
            body, metadata=metadata, compression=compression, timeout=15
        )


async def test_real_grpc_exporter_gzip_api_key_split_per_trace(
    start_gateway: Callable[..., object], read_topic: Callable[..., object]
) -> None:
    gateway: Gateway = await start_gateway(api_keys={"grpc-key": "tenant-g"})
    spans = two_traces()
    exporter = OTLPSpanExporter(
        endpoint=f"127.0.0.1:{gateway.grpc_port}",
        insecure=True,
        headers=(("authorization", "Bearer grpc-key"),),
        compression=grpc.Compression.Gzip,
        timeout=10,
    )

    result = await asyncio.to_thread(exporter.export, spans)
    exporter.shutdown()

    assert result == SpanExportResult.SUCCESS
    messages = await read_topic(gateway.settings.input_topic, 2)
    want = {format(s.context.trace_id, "032x") for s in spans}
    assert len(want) == 2
    assert {m.key().decode() for m in messages} == want
    for message in messages:
        assert headers_of(message)[HEADER_TENANT] == b"tenant-g"
        request = ExportTraceServiceRequest.FromString(message.value())
        names = sorted(s.name for s in request.resource_spans[0].scope_spans[0].spans)
        assert len(names) == 2 and "child" in names
        assert {
            s.trace_id.hex() for s in request.resource_spans[0].scope_spans[0].spans
        } == {message.key().decode()}


async def test_invalid_utf8_span_is_partial_success(
    start_gateway: Callable[..., object],
    read_topic: Callable[..., object],
    build_request: BuildRequest,
) -> None:
    gateway: Gateway = await start_gateway()
    request = build_request([TRACE_A, TRACE_B], spans_per_trace=2)
    request.resource_spans[0].scope_spans[0].spans[3].name = "bad-name!"
    body = request.SerializeToString().replace(b"bad-name!", b"bad-name\xff")

    answer = await call_export(gateway, body, compression=grpc.Compression.Gzip)

    response = ExportTraceServiceResponse.FromString(answer)
    assert response.partial_success.rejected_spans == 1
    assert "invalid_utf8" in response.partial_success.error_message
    messages = await read_topic(gateway.settings.input_topic, 2)
    counts = {
        m.key().decode(): len(
            ExportTraceServiceRequest.FromString(m.value())
            .resource_spans[0]
            .scope_spans[0]
            .spans
        )
        for m in messages
    }
    assert counts == {TRACE_A.hex(): 2, TRACE_B.hex(): 1}
    [dead] = await read_topic(gateway.settings.dlq_topic, 1)
    assert headers_of(dead)[HEADER_DLQ_REASON] == b"invalid_utf8"


async def test_undecodable_is_invalid_argument(
    start_gateway: Callable[..., object],
) -> None:
    gateway: Gateway = await start_gateway()

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call_export(gateway, b"\xff\xfe definitely not protobuf")

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_unknown_key_is_unauthenticated(
    start_gateway: Callable[..., object], build_request: BuildRequest
) -> None:
    gateway: Gateway = await start_gateway(api_keys={"k": "t"}, require_api_key=True)
    body = build_request([TRACE_A]).SerializeToString()

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call_export(gateway, body, metadata=(("x-api-key", "wrong"),))
    answer = await call_export(gateway, body, metadata=(("x-api-key", "k"),))

    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert ExportTraceServiceResponse.FromString(answer) == ExportTraceServiceResponse()


async def test_oversize_message_is_refused(
    start_gateway: Callable[..., object], build_request: BuildRequest
) -> None:
    gateway: Gateway = await start_gateway(max_request_bytes=2048)
    body = build_request([TRACE_A], spans_per_trace=100).SerializeToString()

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call_export(gateway, body)

    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_kafka_unreachable_is_unavailable_with_retry_info(
    start_gateway: Callable[..., object], closed_port: int, build_request: BuildRequest
) -> None:
    gateway: Gateway = await start_gateway(
        kafka_bootstrap=f"127.0.0.1:{closed_port}", produce_timeout_s=1.0
    )

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call_export(gateway, build_request([TRACE_B]).SerializeToString())

    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    trailing = dict(caught.value.trailing_metadata() or ())
    status = status_pb2.Status.FromString(trailing["grpc-status-details-bin"])
    retry = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(retry)
    assert retry.retry_delay.seconds == gateway.settings.retry_after_s
