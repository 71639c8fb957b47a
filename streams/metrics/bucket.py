"""One window's running aggregates for one key, and the key of a span.

A ``Bucket`` sums the model requests of one (window, key) slot and keeps the
identities of the spans it counted (``spans``, 8-byte hashes), so that its
saved value says exactly which spans it holds.
"""

from __future__ import annotations

from array import array
from decimal import Decimal
from typing import Any, NamedTuple

from streams.metrics.dedup import HASH_TYPECODE
from streams.metrics.sketch import Sketch

MODEL_OPERATIONS = frozenset(
    {"chat", "text_completion", "generate_content", "embeddings"}
)
# How a record's identity is derived (MetricWindow.identity_scheme): 1 joins
# the parts with "|", which keys holding "|" can forge, and is kept only for
# records emitted before scheme 2, so that sinks still recognise them.
IDENTITY_JOINED = 1
IDENTITY_SHA256 = 2
# Unpriced requests, and records written before the key had a currency.
DEFAULT_CURRENCY = "USD"


class MetricKey(NamedTuple):
    """What a window is grouped by (a tuple: hashed in C, once per span)."""

    tenant: str
    service: str
    provider: str
    model: str
    operation: str
    # Of the cost: amounts in different currencies never add up.
    currency: str = DEFAULT_CURRENCY


class Bucket:
    """Running aggregates of one window and key."""

    def __init__(self, first_offset: int) -> None:
        self.first_offset = first_offset
        self.last_offset = first_offset
        self.requests = 0
        self.errors = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.cache_read_tokens = 0
        self.reasoning_tokens = 0
        self.cost = Decimal(0)
        self.priced_requests = 0
        self.latency_sum_s = 0.0
        self.ttft_count = 0
        self.ttft_sum_s = 0.0
        self.timed_output_tokens = 0
        self.timed_output_s = 0.0
        self.latency = Sketch()
        self.ttft = Sketch()
        self.max_received_ns = 0
        # Identities of the spans counted, in the order counted.
        self.spans = array(HASH_TYPECODE)

    def add(
        self,
        span: dict[str, Any],
        span_hash: int | None,
        offset: int,
        received_ns: int,
    ) -> None:
        genai = span["genai"]
        if span_hash is not None:
            self.spans.append(span_hash)
        self.last_offset = offset
        self.max_received_ns = max(self.max_received_ns, received_ns)
        self.requests += 1
        if span.get("status_code") == "ERROR" or genai.get("error_type"):
            self.errors += 1
        self.input_tokens += genai.get("input_tokens") or 0
        output_tokens = genai.get("output_tokens") or 0
        self.output_tokens += output_tokens
        self.cache_read_tokens += genai.get("cache_read_tokens") or 0
        self.reasoning_tokens += genai.get("reasoning_tokens") or 0
        cost = span.get("cost")
        # A priced request may cost zero (Decimal("0E-12") is falsy).
        if (
            cost
            and cost.get("status") == "priced"
            and cost.get("total_cost") is not None
        ):
            self.cost += cost["total_cost"]
            self.priced_requests += 1

        latency_s = (span["end_unix_nano"] - span["start_unix_nano"]) / 1e9
        self.latency.add(latency_s)
        self.latency_sum_s += max(latency_s, 0.0)
        if latency_s > 0 and output_tokens:
            self.timed_output_tokens += output_tokens
            self.timed_output_s += latency_s
        ttft_s = genai.get("time_to_first_token_s")
        if ttft_s is not None:
            self.ttft.add(ttft_s)
            self.ttft_count += 1
            self.ttft_sum_s += max(ttft_s, 0.0)

    def to_record(
        self,
        key: MetricKey,
        window_start_ms: int,
        window_s: int,
        source: str,
        kind: str,
    ) -> dict[str, Any]:
        """The MetricWindow record (schema metric_window)."""
        return {
            **key._asdict(),
            "window_start_ms": window_start_ms,
            "window_s": window_s,
            "kind": kind,
            "source": source,
            "first_offset": self.first_offset,
            "last_offset": self.last_offset,
            "requests": self.requests,
            "errors": self.errors,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "cost": self.cost,
            "priced_requests": self.priced_requests,
            "latency_sum_s": self.latency_sum_s,
            "ttft_count": self.ttft_count,
            "ttft_sum_s": self.ttft_sum_s,
            "timed_output_tokens": self.timed_output_tokens,
            "timed_output_s": self.timed_output_s,
            "latency_sketch": self.latency.to_record(),
            "ttft_sketch": self.ttft.to_record(),
            "max_received_unix_nano": self.max_received_ns,
            "emitted_unix_ms": 0,
            "identity_scheme": IDENTITY_SHA256,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any], spans: array | None = None) -> Bucket:
        """A saved bucket again, with the identities of its spans."""
        bucket = cls(record["first_offset"])
        if spans is not None:
            bucket.spans = spans
        for name in (
            "last_offset",
            "requests",
            "errors",
            "input_tokens",
            "output_tokens",
            "cache_read_tokens",
            "reasoning_tokens",
            "priced_requests",
            "latency_sum_s",
            "ttft_count",
            "ttft_sum_s",
            "timed_output_tokens",
            "timed_output_s",
        ):
            setattr(bucket, name, record[name])
        bucket.cost = Decimal(record["cost"])
        bucket.latency = Sketch.from_record(record["latency_sketch"])
        bucket.ttft = Sketch.from_record(record["ttft_sketch"])
        bucket.max_received_ns = record["max_received_unix_nano"]
        return bucket


def request_key(batch: dict[str, Any], span: dict[str, Any]) -> MetricKey | None:
    """The span's key, or None when the span is not a model request."""
    genai = span.get("genai")
    if not genai or genai.get("operation") not in MODEL_OPERATIONS:
        return None
    resources = batch.get("resources") or []
    index = span.get("resource_index", 0)
    service = resources[index]["service_name"] if 0 <= index < len(resources) else ""
    cost = span.get("cost") or {}
    currency = cost.get("currency") if cost.get("status") == "priced" else None
    return MetricKey(
        tenant=batch.get("tenant") or "default",
        service=service or "",
        provider=genai.get("provider") or "",
        model=genai.get("request_model") or genai.get("response_model") or "",
        operation=genai["operation"],
        currency=currency or DEFAULT_CURRENCY,
    )
