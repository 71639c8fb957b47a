"""Counters of the gateway, rendered in the Prometheus text format."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from llmobs.prometheus import Exposition


class GatewayMetrics:
    """Process-wide counters; updated only from the event loop thread."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, int]] = Counter()
        self.received_bytes: Counter[str] = Counter()
        self.spans_accepted = 0
        self.spans_rejected: Counter[str] = Counter()
        self.messages_produced = 0
        self.dlq_messages = 0
        self.dlq_failed = 0

    def count_request(self, transport: str, status: int, body_bytes: int) -> None:
        self.requests[(transport, status)] += 1
        self.received_bytes[transport] += body_bytes

    def render(self, inflight_bytes: Callable[[], int]) -> str:
        """Every counter as Prometheus text exposition format 0.0.4."""
        out = Exposition()
        out.family(
            "llmobs_gateway_requests_total",
            "counter",
            "Export requests by transport and status (HTTP status or gRPC code).",
            [
                ({"transport": transport, "status": str(status)}, count)
                for (transport, status), count in sorted(self.requests.items())
            ],
        )
        out.family(
            "llmobs_gateway_received_bytes_total",
            "counter",
            "Request body bytes as received, before decompression.",
            [({"transport": t}, n) for t, n in sorted(self.received_bytes.items())],
        )
        out.single(
            "llmobs_gateway_spans_accepted_total",
            "counter",
            "Spans sent to Kafka.",
            self.spans_accepted,
        )
        out.family(
            "llmobs_gateway_spans_rejected_total",
            "counter",
            "Spans rejected by reason.",
            [({"reason": r}, n) for r, n in sorted(self.spans_rejected.items())],
        )
        out.single(
            "llmobs_gateway_messages_produced_total",
            "counter",
            "Per-trace messages confirmed by Kafka.",
            self.messages_produced,
        )
        out.single(
            "llmobs_gateway_dlq_messages_total",
            "counter",
            "Dead letters confirmed by Kafka.",
            self.dlq_messages,
        )
        out.single(
            "llmobs_gateway_dlq_failed_total",
            "counter",
            "Dead letters that could not be produced.",
            self.dlq_failed,
        )
        out.single(
            "llmobs_gateway_inflight_bytes",
            "gauge",
            "Bytes produced and awaiting Kafka confirmation.",
            inflight_bytes(),
        )
        return out.text()
