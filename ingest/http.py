"""OTLP/HTTP front end: POST /v1/traces, plus /healthz and /metrics.

Statuses follow the OTLP/HTTP specification: 415 for a content type other
than protobuf or JSON, 413 for bodies over the limit, 400 for undecodable
bodies (google.rpc.Status body), 429 and 503 with Retry-After when Kafka
cannot keep up, 200 with partial_success when some spans were rejected.
Answers are encoded like the request.
"""

from __future__ import annotations

import logging
import zlib

import orjson
from aiohttp import web
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from google.rpc import code_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceResponse,
)

from ingest.export import Exporter, Unauthenticated, api_key_from
from ingest.metrics import GatewayMetrics
from ingest.producer import DeliveryFailed, ProducerBusy, SpanProducer
from ingest.settings import GatewaySettings
from llmobs.errors import DecodeError
from llmobs.otlp import JSON, PROTOBUF
from llmobs.prometheus import CONTENT_TYPE

log = logging.getLogger(__name__)

TRACES_PATH = "/v1/traces"
TRANSPORT = "http"

_EXPORTER = web.AppKey("exporter", Exporter)
_METRICS = web.AppKey("metrics", GatewayMetrics)
_PRODUCER = web.AppKey("producer", SpanProducer)
_SETTINGS = web.AppKey("settings", GatewaySettings)


class _Refused(Exception):
    """An answer other than 200, decided before or after decoding."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def build_app(
    settings: GatewaySettings,
    exporter: Exporter,
    producer: SpanProducer,
    metrics: GatewayMetrics,
) -> web.Application:
    """The aiohttp application; run it with ``auto_decompress=False``."""
    # The body limit is enforced here on the compressed size, and again by
    # _decompress on the decompressed size.
    app = web.Application(client_max_size=settings.max_request_bytes)
    app[_EXPORTER] = exporter
    app[_METRICS] = metrics
    app[_PRODUCER] = producer
    app[_SETTINGS] = settings
    app.router.add_post(TRACES_PATH, _export)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/metrics", _metrics)
    return app


async def _export(request: web.Request) -> web.Response:
    settings = request.app[_SETTINGS]
    metrics = request.app[_METRICS]
    content_type = request.content_type
    # Answers to bodies of unknown type are JSON, readable by any client.
    answer_type = PROTOBUF if content_type == PROTOBUF else JSON
    body_bytes = 0
    try:
        exporter = request.app[_EXPORTER]
        api_key = api_key_from(
            request.headers.get("Authorization"), request.headers.get("x-api-key")
        )
        tenant = exporter.tenant_for(api_key)
        if content_type not in (PROTOBUF, JSON):
            raise _Refused(415, code_pb2.INVALID_ARGUMENT, "unsupported content type")
        raw = await _read_body(request, settings.max_request_bytes)
        body_bytes = len(raw)
        body = _decompress(raw, request.headers.get("Content-Encoding", ""), settings)
        result = await exporter.export(body, content_type, tenant)
    except _Refused as refused:
        return _status_answer(
            request,
            refused.status,
            refused.code,
            refused.message,
            answer_type,
            body_bytes,
        )
    except Unauthenticated as exc:
        return _status_answer(
            request, 401, code_pb2.UNAUTHENTICATED, str(exc), answer_type, body_bytes
        )
    except DecodeError as exc:
        return _status_answer(
            request, 400, code_pb2.INVALID_ARGUMENT, str(exc), answer_type, body_bytes
        )
    except ProducerBusy as exc:
        log.warning("answered 429: %s", exc)
        return _status_answer(
            request, 429, code_pb2.RESOURCE_EXHAUSTED, str(exc), answer_type, body_bytes
        )
    except DeliveryFailed as exc:
        log.warning("answered 503: %s", exc)
        return _status_answer(
            request, 503, code_pb2.UNAVAILABLE, str(exc), answer_type, body_bytes
        )

    response = ExportTraceServiceResponse()
    if result.rejected_spans:
        response.partial_success.rejected_spans = result.rejected_spans
        response.partial_success.error_message = result.error_message
    metrics.count_request(TRANSPORT, 200, body_bytes)
    return _encode(response, 200, answer_type)


async def _read_body(request: web.Request, max_bytes: int) -> bytes:
    if request.content_length is not None and request.content_length > max_bytes:
        raise _Refused(413, code_pb2.INVALID_ARGUMENT, _too_large(max_bytes))
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise _Refused(413, code_pb2.INVALID_ARGUMENT, _too_large(max_bytes)) from exc


def _decompress(raw: bytes, encoding: str, settings: GatewaySettings) -> bytes:
    """The body after Content-Encoding, refusing bombs past the size limit."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return raw
    if encoding == "gzip":
        wbits = 16 + zlib.MAX_WBITS
    elif encoding == "deflate":
        # RFC 9110 deflate is zlib-wrapped; some clients send it raw.
        is_zlib = len(raw) >= 2 and (raw[0] << 8 | raw[1]) % 31 == 0
        wbits = zlib.MAX_WBITS if is_zlib else -15
    else:
        raise _Refused(
            415, code_pb2.INVALID_ARGUMENT, f"unsupported encoding {encoding}"
        )

    limit = settings.max_request_bytes
    parts: list[bytes] = []
    size = 0
    rest = raw
    # A gzip body may hold several members back to back (RFC 1952); each
    # is inflated in turn, or the spans of all but the first would be lost.
    while rest:
        decompressor = zlib.decompressobj(wbits=wbits)
        try:
            part = decompressor.decompress(rest, limit + 1 - size)
        except zlib.error as exc:
            raise _Refused(
                400, code_pb2.INVALID_ARGUMENT, f"bad {encoding} body: {exc}"
            ) from exc
        size += len(part)
        if size > limit:
            raise _Refused(413, code_pb2.INVALID_ARGUMENT, _too_large(limit))
        if not decompressor.eof:
            raise _Refused(400, code_pb2.INVALID_ARGUMENT, f"truncated {encoding} body")
        parts.append(part)
        rest = decompressor.unused_data
        if rest and encoding != "gzip":
            raise _Refused(
                400, code_pb2.INVALID_ARGUMENT, f"data after the {encoding} stream"
            )
    return b"".join(parts)


def _too_large(limit: int) -> str:
    return f"body larger than {limit} bytes"


def _status_answer(
    request: web.Request,
    status: int,
    code: int,
    message: str,
    answer_type: str,
    body_bytes: int,
) -> web.Response:
    request.app[_METRICS].count_request(TRANSPORT, status, body_bytes)
    response = _encode(
        status_pb2.Status(code=code, message=message), status, answer_type
    )
    if status in (429, 503):
        response.headers["Retry-After"] = str(request.app[_SETTINGS].retry_after_s)
    return response


def _encode(message: Message, status: int, answer_type: str) -> web.Response:
    if answer_type == JSON:
        body = orjson.dumps(MessageToDict(message))
    else:
        body = message.SerializeToString()
    return web.Response(status=status, body=body, content_type=answer_type)


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def _metrics(request: web.Request) -> web.Response:
    producer = request.app[_PRODUCER]
    text = request.app[_METRICS].render(lambda: producer.inflight_bytes)
    return web.Response(body=text.encode(), headers={"Content-Type": CONTENT_TYPE})
