"""Budget rules from the operator's YAML file, and the alerts they raise.

Limits and usage are exact decimals: a cost budget is checked against the
integer nano-units Redis holds, never against a float.
"""

from __future__ import annotations

import decimal
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from llmobs.errors import ConfigError

PERIODS = ("day", "month")
METRICS = ("cost", "tokens", "requests")
DEFAULT_CURRENCY = "USD"


@dataclass(frozen=True)
class Budget:
    """A limit on cost, tokens or requests of a tenant and/or model per period."""

    name: str
    period: str
    limit: Decimal
    tenant: str | None = None
    # "provider/model"; the provider ends at the first "/".
    model: str | None = None
    metric: str = "cost"
    thresholds: tuple[float, ...] = (1.0,)
    currency: str = DEFAULT_CURRENCY

    @property
    def provider_model(self) -> tuple[str, str] | None:
        if self.model is None:
            return None
        provider, _, model = self.model.partition("/")
        return provider, model

    def matches(self, record: dict[str, Any]) -> bool:
        if self.tenant is not None and record["tenant"] != self.tenant:
            return False
        wanted = self.provider_model
        return wanted is None or wanted == (record["provider"], record["model"])

    def reached(self, used: Decimal, threshold: float) -> bool:
        """Exact: ``used`` is at least ``threshold`` of the limit."""
        return used >= Decimal(str(threshold)) * self.limit


def load_budgets(path: str | None) -> list[Budget]:
    """Budget rules from YAML (a ``budgets:`` list); errors name the rule."""
    if not path:
        return []
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError, ValueError) as exc:
        raise ConfigError(f"setting budgets_file: cannot read {path}: {exc}") from exc
    budgets = []
    for index, rule in enumerate(data.get("budgets") or []):
        where = f"budgets_file {path}: budget {index}"
        if not isinstance(rule, dict):
            raise ConfigError(f"{where}: expected a mapping")
        try:
            budget = Budget(
                name=str(rule["name"]),
                period=str(rule.get("period", "day")),
                # Through str: YAML's 0.1 is a float, and 0.1 is what was meant.
                limit=Decimal(str(rule["limit"])),
                tenant=rule.get("tenant"),
                model=rule.get("model"),
                metric=str(rule.get("metric", "cost")),
                thresholds=tuple(float(t) for t in rule.get("thresholds", [1.0])),
                currency=str(rule.get("currency", DEFAULT_CURRENCY)).upper(),
            )
        except decimal.InvalidOperation:
            raise ConfigError(
                f"{where}: limit must be a positive number, got {rule['limit']!r}"
            ) from None
        except KeyError as exc:
            raise ConfigError(f"{where}: {exc.args[0]} is required") from None
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: {type(exc).__name__}: {exc}") from exc
        if budget.period not in PERIODS:
            raise ConfigError(f"{where}: period must be one of {PERIODS}")
        if budget.metric not in METRICS:
            raise ConfigError(f"{where}: metric must be one of {METRICS}")
        if budget.tenant is None and budget.model is None:
            raise ConfigError(f"{where}: give a tenant, a model or both")
        wanted = budget.provider_model
        if wanted is not None and not all(wanted):
            raise ConfigError(
                f"{where}: model must be provider/model, such as openai/gpt-4o, "
                f"got {budget.model!r}"
            )
        if ":" in budget.name:
            raise ConfigError(f"{where}: name must not hold ':' (it is in Redis keys)")
        if not budget.limit.is_finite() or budget.limit <= 0:
            raise ConfigError(f"{where}: limit must be a positive number")
        if not budget.thresholds or min(budget.thresholds) <= 0:
            raise ConfigError(f"{where}: thresholds must be positive")
        if len(budget.currency) != 3 or not budget.currency.isalpha():
            raise ConfigError(f"{where}: currency must be a code such as USD")
        budgets.append(budget)
    if len({b.name for b in budgets}) != len(budgets):
        raise ConfigError(f"budgets_file {path}: budget names must be unique")
    return budgets


def alert(
    budget: Budget, period_id: str, threshold: float, used: Decimal
) -> dict[str, Any]:
    """The JSON alert of a crossing; amounts are exact decimal strings."""
    return {
        # The same for every send of this crossing: consumers drop repeats.
        "alert_id": f"{budget.name}/{period_id}/{threshold}",
        "budget": budget.name,
        "tenant": budget.tenant,
        "model": budget.model,
        "metric": budget.metric,
        "currency": budget.currency if budget.metric == "cost" else None,
        "period": budget.period,
        "period_id": period_id,
        "threshold": threshold,
        "limit": str(budget.limit),
        "used": str(used),
    }
