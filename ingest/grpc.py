"""OTLP/gRPC front end: opentelemetry.proto.collector.trace.v1.TraceService/Export.

The method is registered with a raw-bytes request deserializer so that the
same lenient decoder as OTLP/HTTP applies: a span with invalid UTF-8 is
rejected through partial_success instead of failing the whole call. Status
codes follow the OTLP specification; RESOURCE_EXHAUSTED and UNAVAILABLE carry
a google.rpc.RetryInfo so that exporters retry after a delay.
"""

from __future__ import annotations

import logging
from typing import NoReturn

import grpc
from google.protobuf.any_pb2 import Any as AnyProto
from google.protobuf.duration_pb2 import Duration
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceResponse,
)

from ingest.export import Exporter, Unauthenticated, api_key_from
from ingest.metrics import GatewayMetrics
from ingest.producer import DeliveryFailed, ProducerBusy
from ingest.settings import GatewaySettings
from llmobs.errors import DecodeError
from llmobs.otlp import PROTOBUF

log = logging.getLogger(__name__)

SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
TRANSPORT = "grpc"
_STATUS_DETAILS_KEY = "grpc-status-details-bin"


class TraceService:
    """Handles Export calls; bodies arrive as raw bytes."""

    def __init__(
        self, settings: GatewaySettings, exporter: Exporter, metrics: GatewayMetrics
    ) -> None:
        self._exporter = exporter
        self._metrics = metrics
        self._retry_after_s = settings.retry_after_s

    def handler(self) -> grpc.GenericRpcHandler:
        """The generic handler to add to a grpc.aio server."""
        export = grpc.unary_unary_rpc_method_handler(
            self.export, request_deserializer=None, response_serializer=None
        )
        return grpc.method_handlers_generic_handler(SERVICE, {"Export": export})

    async def export(self, body: bytes, context: grpc.aio.ServicerContext) -> bytes:
        """One Export call: the serialized request in, the response out."""
        metadata = {m.key: m.value for m in context.invocation_metadata() or ()}
        try:
            api_key = api_key_from(
                _text(metadata.get("authorization")), _text(metadata.get("x-api-key"))
            )
            tenant = self._exporter.tenant_for(api_key)
            result = await self._exporter.export(body, PROTOBUF, tenant)
        except Unauthenticated as exc:
            await self._abort(context, grpc.StatusCode.UNAUTHENTICATED, str(exc), body)
        except DecodeError as exc:
            await self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc), body)
        except ProducerBusy as exc:
            log.warning("answered RESOURCE_EXHAUSTED: %s", exc)
            await self._abort(
                context, grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc), body, retry=True
            )
        except DeliveryFailed as exc:
            log.warning("answered UNAVAILABLE: %s", exc)
            await self._abort(
                context, grpc.StatusCode.UNAVAILABLE, str(exc), body, retry=True
            )

        response = ExportTraceServiceResponse()
        if result.rejected_spans:
            response.partial_success.rejected_spans = result.rejected_spans
            response.partial_success.error_message = result.error_message
        self._metrics.count_request(TRANSPORT, grpc.StatusCode.OK.value[0], len(body))
        return response.SerializeToString()

    async def _abort(
        self,
        context: grpc.aio.ServicerContext,
        code: grpc.StatusCode,
        message: str,
        body: bytes,
        retry: bool = False,
    ) -> NoReturn:
        self._metrics.count_request(TRANSPORT, code.value[0], len(body))
        trailing: tuple[tuple[str, bytes], ...] = ()
        if retry:
            status = status_pb2.Status(code=code.value[0], message=message)
            detail = AnyProto()
            detail.Pack(
                error_details_pb2.RetryInfo(
                    retry_delay=Duration(seconds=self._retry_after_s)
                )
            )
            status.details.append(detail)
            trailing = ((_STATUS_DETAILS_KEY, status.SerializeToString()),)
        await context.abort(code, message, trailing_metadata=trailing)
        raise RuntimeError("grpc context.abort returned")


def _text(value: str | bytes | None) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value
