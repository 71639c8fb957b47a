"""Counters of the gateway, rendered in the Prometheus text format."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable


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
        lines: list[str] = []

        def family(name: str, kind: str, help_text: str) -> None:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")

        family(
            "llmobs_gateway_requests_total",
            "counter",
            "Export requests by transport and status (HTTP status or gRPC code).",
        )
        for (transport, status), count in sorted(self.requests.items()):
            lines.append(
                f'llmobs_gateway_requests_total{{transport="{transport}",'
                f'status="{status}"}} {count}'
            )

        family(
            "llmobs_gateway_received_bytes_total",
            "counter",
            "Request body bytes as received, before decompression.",
        )
        for transport, count in sorted(self.received_bytes.items()):
            label = f'transport="{transport}"'
            lines.append(f"llmobs_gateway_received_bytes_total{{{label}}} {count}")

        family("llmobs_gateway_spans_accepted_total", "counter", "Spans sent to Kafka.")
        lines.append(f"llmobs_gateway_spans_accepted_total {self.spans_accepted}")

        family(
            "llmobs_gateway_spans_rejected_total",
            "counter",
            "Spans rejected by reason.",
        )
        for reason, count in sorted(self.spans_rejected.items()):
            lines.append(
                f'llmobs_gateway_spans_rejected_total{{reason="{reason}"}} {count}'
            )

        for name, value, help_text in (
            (
                "llmobs_gateway_messages_produced_total",
                self.messages_produced,
                "Per-trace messages confirmed by Kafka.",
            ),
            (
                "llmobs_gateway_dlq_messages_total",
                self.dlq_messages,
                "Dead letters confirmed by Kafka.",
            ),
            (
                "llmobs_gateway_dlq_failed_total",
                self.dlq_failed,
                "Dead letters that could not be produced.",
            ),
        ):
            family(name, "counter", help_text)
            lines.append(f"{name} {value}")

        family(
            "llmobs_gateway_inflight_bytes",
            "gauge",
            "Bytes produced and awaiting Kafka confirmation.",
        )
        lines.append(f"llmobs_gateway_inflight_bytes {inflight_bytes()}")
        return "\n".join(lines) + "\n"
