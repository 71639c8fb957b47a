"""SpanBatch records of model calls with chosen end times, and their truth."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

from streams.metrics.bucket import MODEL_OPERATIONS

MODELS = (("openai", "gpt-4o"), ("anthropic", "claude-sonnet-4"), ("openai", "e5"))


def span(
    rng: random.Random, end_ns: int, operation: str = "chat", **genai: Any
) -> dict[str, Any]:
    """One span record as decoded from llm.spans."""
    provider, model = MODELS[rng.randrange(len(MODELS))]
    duration_ns = rng.randint(1, 5000) * 1_000_000
    priced = rng.random() < 0.8
    fields = {
        "operation": operation,
        "provider": provider,
        "request_model": model,
        "response_model": model + "-2025",
        "input_tokens": rng.randint(1, 4000),
        "output_tokens": rng.randint(0, 800),
        "cache_read_tokens": rng.randint(0, 100),
        "reasoning_tokens": rng.randint(0, 50),
        "time_to_first_token_s": rng.choice([None, rng.random() * 2]),
        "error_type": None,
    }
    fields.update(genai)
    return {
        "resource_index": 0,
        "span_id": f"{rng.getrandbits(64):016x}",
        "start_unix_nano": end_ns - duration_ns,
        "end_unix_nano": end_ns,
        "status_code": "ERROR" if rng.random() < 0.1 else "UNSET",
        "genai": fields,
        "cost": {
            "status": "priced" if priced else "unknown_model",
            "total_cost": Decimal(rng.randint(1, 10**9)) / Decimal(10**12)
            if priced
            else None,
        },
    }


def batch(
    tenant: str, spans: list[dict[str, Any]], service: str = "svc"
) -> dict[str, Any]:
    return {
        "tenant": tenant,
        "trace_id": "0" * 32,
        "received_unix_nano": max(s["end_unix_nano"] for s in spans),
        "source": "test",
        "resources": [{"service_name": service}],
        "spans": spans,
    }


def currency(span: dict[str, Any]) -> str:
    """The currency a span's request counts under."""
    cost = span["cost"]
    return (cost["status"] == "priced" and cost.get("currency")) or "USD"


def truth(batches: list[dict[str, Any]], window_s: int) -> dict[tuple[Any, ...], Any]:
    """Exact totals per (window start ms, key) recomputed from raw spans."""
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for b in batches:
        for s in b["spans"]:
            g = s["genai"]
            if g is None or g["operation"] not in MODEL_OPERATIONS:
                continue
            end_ms = s["end_unix_nano"] // 1_000_000
            key = (
                end_ms - end_ms % (window_s * 1000),
                b["tenant"],
                b["resources"][0]["service_name"],
                g["provider"] or "",
                g["request_model"],
                g["operation"],
                currency(s),
            )
            row = out.setdefault(
                key,
                {
                    "requests": 0,
                    "errors": 0,
                    "input_tokens": 0,
                    "output_tokens": 0,
                    "cost": Decimal(0),
                    "latencies": [],
                },
            )
            row["requests"] += 1
            row["errors"] += s["status_code"] == "ERROR" or bool(g["error_type"])
            row["input_tokens"] += g["input_tokens"]
            row["output_tokens"] += g["output_tokens"]
            if s["cost"]["status"] == "priced":
                row["cost"] += s["cost"]["total_cost"]
            row["latencies"].append((s["end_unix_nano"] - s["start_unix_nano"]) / 1e9)
    return out
