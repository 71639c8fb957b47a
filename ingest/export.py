"""One export request, transport aside: tenant, decode, split, produce.

The HTTP and gRPC front ends read the body and the API key, call
``Exporter.export`` and map its outcome or its exceptions to their statuses:

    Unauthenticated      401 / UNAUTHENTICATED
    DecodeError          400 / INVALID_ARGUMENT
    ProducerBusy         429 / RESOURCE_EXHAUSTED
    DeliveryFailed       503 / UNAVAILABLE
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from ingest.metrics import GatewayMetrics
from ingest.producer import Headers, SpanProducer
from ingest.settings import GatewaySettings
from llmobs.errors import DecodeError, ObservatoryError
from llmobs.otlp import (
    EMPTY_REQUEST,
    INVALID_JSON,
    PROTOBUF,
    Decoded,
    Rejection,
    decode_json,
    decode_proto,
    reject_bad_tenants,
    split_by_trace,
)
from llmobs.topics import HEADER_RECEIVED_NS, HEADER_TENANT

log = logging.getLogger(__name__)

_BEARER = "bearer "


class Unauthenticated(ObservatoryError):
    """The request carries no API key, or one the gateway does not know."""


@dataclass(frozen=True, slots=True)
class ExportResult:
    """What the caller reports back: accepted spans and the partial success."""

    accepted_spans: int
    rejected_spans: int
    error_message: str


def api_key_from(authorization: str | None, x_api_key: str | None) -> str | None:
    """The API key of ``Authorization: Bearer KEY`` or else ``x-api-key``."""
    if authorization and authorization[: len(_BEARER)].lower() == _BEARER:
        return authorization[len(_BEARER) :].strip() or None
    return x_api_key.strip() if x_api_key else None


class Exporter:
    """Turns one OTLP request body into Kafka messages that Kafka confirmed."""

    def __init__(
        self, settings: GatewaySettings, producer: SpanProducer, metrics: GatewayMetrics
    ) -> None:
        self._api_keys = dict(settings.api_keys)
        self._require_api_key = settings.require_api_key
        self._producer = producer
        self._metrics = metrics

    def tenant_for(self, api_key: str | None) -> str | None:
        """The tenant of ``api_key``; None leaves the choice to the decode stage."""
        tenant = self._api_keys.get(api_key) if api_key else None
        if tenant is None and self._require_api_key:
            raise Unauthenticated(
                "missing API key" if not api_key else "unknown API key"
            )
        return tenant

    async def export(
        self, body: bytes, content_type: str, tenant: str | None
    ) -> ExportResult:
        """Decode ``body``, produce one message per trace, wait for Kafka."""
        received_ns = time.time_ns()
        headers: Headers = [(HEADER_RECEIVED_NS, str(received_ns).encode())]
        if tenant is not None:
            headers.append((HEADER_TENANT, tenant.encode()))

        decoded = self._decode(body, content_type, headers)
        if decoded is None:
            return ExportResult(0, 0, "")
        if tenant is None:
            decoded = reject_bad_tenants(decoded)
        self._reject(decoded.rejected, headers)
        if decoded.span_count == 0:
            raise DecodeError(
                decoded.rejected[0].reason,
                f"every span was rejected: {decoded.rejection_message()}",
            )

        traces = split_by_trace(decoded.request)
        if len(traces) == 1 and not decoded.rejected and content_type == PROTOBUF:
            # The body already is that one trace's request: skip re-encoding.
            messages = [(next(iter(traces)).encode(), body)]
        else:
            messages = [
                (trace_id.encode(), request.SerializeToString())
                for trace_id, request in traces.items()
            ]
        await self._producer.send(messages, headers)

        self._metrics.spans_accepted += decoded.span_count
        self._metrics.messages_produced += len(messages)
        log.debug(
            "produced %d span(s) of %d trace(s)", decoded.span_count, len(messages)
        )
        return ExportResult(
            decoded.span_count, decoded.rejected_spans, decoded.rejection_message()
        )

    def _decode(
        self, body: bytes, content_type: str, headers: Headers
    ) -> Decoded | None:
        """Decoded request, None when it holds nothing; DecodeError when unreadable."""
        decode = decode_proto if content_type == PROTOBUF else decode_json
        try:
            return decode(body)
        except DecodeError as exc:
            if exc.reason == EMPTY_REQUEST:
                return None
            rejection = Rejection(exc.reason, exc.detail, 0, body, content_type)
            self._reject([rejection], headers)
            raise

    def _reject(self, rejected: list[Rejection], headers: Headers) -> None:
        for rejection in rejected:
            self._metrics.spans_rejected[rejection.reason] += rejection.spans
            # A JSON parser's message may quote the body, prompts included.
            detail = "" if rejection.reason == INVALID_JSON else rejection.detail
            log.warning(
                "rejected %d span(s): %s %s", rejection.spans, rejection.reason, detail
            )
            self._producer.dead_letter(rejection, headers)
