"""A read-only view of one whole trace, as the sampling policies see it."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from functools import cached_property
from typing import Any

import orjson

from streams.sampling.probability import trace_hash


class TraceView:
    """The spans of one trace from all its buffered SpanBatch records."""

    def __init__(self, trace_id: str, batches: list[dict[str, Any]]) -> None:
        self.trace_id = trace_id
        self.batches = batches
        self._hashes: dict[bytes, int] = {}
        self.spans: list[dict[str, Any]] = []
        self._resource_of: list[dict[str, Any]] = []
        for batch in batches:
            resources = batch.get("resources") or []
            for span in batch.get("spans") or []:
                self.spans.append(span)
                index = span.get("resource_index", 0)
                self._resource_of.append(
                    resources[index] if 0 <= index < len(resources) else {}
                )

    def id_hash(self, salt: bytes) -> int:
        """The salted hash of the trace id, computed once per salt."""
        value = self._hashes.get(salt)
        if value is None:
            value = self._hashes[salt] = trace_hash(salt, self.trace_id)
        return value

    @property
    def span_count(self) -> int:
        return len(self.spans)

    @cached_property
    def duration_ms(self) -> float:
        """Latest end minus earliest start over the whole trace."""
        starts = [s["start_unix_nano"] for s in self.spans if s["start_unix_nano"]]
        ends = [s["end_unix_nano"] for s in self.spans if s["end_unix_nano"]]
        if not starts or not ends:
            return 0.0
        return max(0, max(ends) - min(starts)) / 1e6

    @cached_property
    def _span_attributes(self) -> list[dict[str, Any]]:
        return [_json_object(s.get("attributes_json")) for s in self.spans]

    @cached_property
    def _resource_attributes(self) -> list[dict[str, Any]]:
        parsed: dict[int, dict[str, Any]] = {}
        out = []
        for resource in self._resource_of:
            key = id(resource)
            if key not in parsed:
                parsed[key] = _json_object(resource.get("resource_attributes_json"))
            out.append(parsed[key])
        return out

    def attribute_values(self, key: str) -> Iterator[Any]:
        """Values of ``key`` on every span, then on every span's resource."""
        for attributes in self._span_attributes:
            if key in attributes:
                yield attributes[key]
        for attributes in self._resource_attributes:
            if key in attributes:
                yield attributes[key]

    def genai(self) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
        """(span, genai record) of every span with normalized GenAI fields."""
        for span in self.spans:
            genai = span.get("genai")
            if genai:
                yield span, genai

    @cached_property
    def known_cost(self) -> Decimal | None:
        """Sum of the priced spans' cost; None when no span carries a price."""
        total: Decimal | None = None
        for span in self.spans:
            cost = span.get("cost")
            amount = cost.get("total_cost") if cost else None
            if amount is None:
                continue
            total = (total or Decimal(0)) + Decimal(amount)
        return total

    def cost_statuses(self) -> Iterator[str]:
        """Pricing status of every span that went through cost enrichment."""
        for span in self.spans:
            cost = span.get("cost")
            if cost and cost.get("status"):
                yield cost["status"]


def root_ended(spans: list[dict[str, Any]]) -> bool:
    """Whether a SpanBatch's spans hold the trace's root, ended."""
    return any(not s.get("parent_span_id") and s["end_unix_nano"] for s in spans)


def ended_before(spans: list[dict[str, Any]], time_s: float) -> bool:
    """Every span ended, and before ``time_s``."""
    limit_ns = time_s * 1e9
    return bool(spans) and all(0 < s["end_unix_nano"] <= limit_ns for s in spans)


def _json_object(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
