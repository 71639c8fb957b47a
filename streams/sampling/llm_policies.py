"""Policies that read the normalized GenAI and cost fields of the spans."""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal

from streams.sampling.policies import Policy
from streams.sampling.trace import TraceView

TOKEN_KINDS = ("total", "input", "output", "reasoning")
UNKNOWN_MODEL = "unknown_model"
# Spans that roll up their children's usage; counting them would double it.
ROLLUP_OPERATIONS = frozenset({"invoke_agent", "create_agent", "invoke_workflow"})


class Cost(Policy):
    """Priced cost of the trace at or above ``min_cost``; unknown never matches."""

    def __init__(self, name: str, min_cost: Decimal) -> None:
        super().__init__(name)
        self.min_cost = min_cost

    def matches(self, trace: TraceView) -> bool:
        cost = trace.known_cost
        return cost is not None and cost >= self.min_cost


class Tokens(Policy):
    def __init__(self, name: str, min_tokens: int, kind: str) -> None:
        super().__init__(name)
        self.min_tokens = min_tokens
        self.kind = kind

    def matches(self, trace: TraceView) -> bool:
        total = 0
        for _, genai in trace.genai():
            if genai.get("operation") in ROLLUP_OPERATIONS:
                continue
            total += self._tokens(genai)
        return total >= self.min_tokens

    def _tokens(self, genai: dict[str, object]) -> int:
        if self.kind == "total":
            reported = genai.get("total_tokens")
            if isinstance(reported, int):
                return reported
            return _int(genai.get("input_tokens")) + _int(genai.get("output_tokens"))
        return _int(genai.get(f"{self.kind}_tokens"))


class Model(Policy):
    """Request or response model in a set (exact names or regular expressions)."""

    def __init__(self, name: str, models: Sequence[str], regex: bool) -> None:
        super().__init__(name)
        self.models = frozenset(models)
        self.patterns = [re.compile(m) for m in models] if regex else []

    def matches(self, trace: TraceView) -> bool:
        for _, genai in trace.genai():
            for field in ("request_model", "response_model"):
                model = genai.get(field)
                if model and self._matches(model):
                    return True
        return False

    def _matches(self, model: str) -> bool:
        if self.patterns:
            return any(p.search(model) for p in self.patterns)
        return model in self.models


class Provider(Policy):
    def __init__(self, name: str, providers: Sequence[str]) -> None:
        super().__init__(name)
        self.providers = frozenset(p.lower() for p in providers)

    def matches(self, trace: TraceView) -> bool:
        return any(
            (genai.get("provider") or "").lower() in self.providers
            for _, genai in trace.genai()
        )


class ModelError(Policy):
    """A model call that failed: error status or an error type on a GenAI span."""

    def matches(self, trace: TraceView) -> bool:
        for span, genai in trace.genai():
            if genai.get("operation") in ROLLUP_OPERATIONS:
                continue
            if span["status_code"] == "ERROR" or genai.get("error_type"):
                return True
        return False


class UnpricedModel(Policy):
    """A model call the cost stage could not price because its model is unknown."""

    def matches(self, trace: TraceView) -> bool:
        return UNKNOWN_MODEL in set(trace.cost_statuses())


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
