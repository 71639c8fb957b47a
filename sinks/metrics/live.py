"""Live counters of today's and this month's usage in Redis, and budget alerts.

Keys (``<p>`` is the ``redis_prefix``, ``<period>`` a UTC day ``2025-01-31``
or month ``2025-01``):

- ``<p>:usage:<period>:tenant:<tenant>`` hash: cost, requests, input_tokens,
  output_tokens, tokens (input + output)
- ``<p>:usage:<period>:model:<tenant>:<provider>/<model>`` hash: same fields
- ``<p>:usage:<period>:model:*:<provider>/<model>`` hash: all tenants
- ``<p>:cost_by_model:<period>:<tenant>`` sorted set: model -> cost
- ``<p>:applied:<record identity>``: marker that the record was counted
- ``<p>:alert:<budget>:<period>:<threshold>``: ``pending`` while the alert of
  a crossing is being sent, ``sent`` once Kafka confirmed it

A record is counted at most once: a Lua script sets its marker with NX and
increments only when the marker is new. An alert is claimed as pending before
it is produced and marked sent after Kafka confirms it; a pending alert found
again (its sender died in between) is sent again, with the same ``alert_id``,
so it goes out at least once and consumers drop repeats by that id.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from llmobs.errors import ConfigError

log = logging.getLogger(__name__)

PERIODS = ("day", "month")
METRICS = ("cost", "tokens", "requests")
PENDING = b"pending"
SENT = b"sent"

COUNT_ONCE = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
for i = 2, #KEYS - 2 do
  redis.call('HINCRBYFLOAT', KEYS[i], 'cost', ARGV[2])
  redis.call('HINCRBY', KEYS[i], 'requests', ARGV[3])
  redis.call('HINCRBY', KEYS[i], 'input_tokens', ARGV[4])
  redis.call('HINCRBY', KEYS[i], 'output_tokens', ARGV[5])
  redis.call('HINCRBY', KEYS[i], 'tokens', ARGV[7])
  redis.call('EXPIRE', KEYS[i], ARGV[1])
end
for i = #KEYS - 1, #KEYS do
  redis.call('ZINCRBY', KEYS[i], ARGV[2], ARGV[6])
  redis.call('EXPIRE', KEYS[i], ARGV[1])
end
return 1
"""


@dataclass(frozen=True)
class Budget:
    """A limit on cost, tokens or requests of a tenant and/or model per period."""

    name: str
    period: str
    limit: float
    tenant: str | None = None
    model: str | None = None
    metric: str = "cost"
    thresholds: tuple[float, ...] = (1.0,)

    def usage_key(self, prefix: str, period_id: str) -> str:
        if self.model is None:
            return f"{prefix}:usage:{period_id}:tenant:{self.tenant}"
        return f"{prefix}:usage:{period_id}:model:{self.tenant or '*'}:{self.model}"

    def matches(self, record: dict[str, Any]) -> bool:
        if self.tenant is not None and record["tenant"] != self.tenant:
            return False
        return self.model is None or model_name(record) == self.model


def model_name(record: dict[str, Any]) -> str:
    return f"{record['provider']}/{record['model']}"


def load_budgets(path: str | None) -> list[Budget]:
    """Budget rules from YAML (a ``budgets:`` list); errors name the rule."""
    if not path:
        return []
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
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
                limit=float(rule["limit"]),
                tenant=rule.get("tenant"),
                model=rule.get("model"),
                metric=str(rule.get("metric", "cost")),
                thresholds=tuple(float(t) for t in rule.get("thresholds", [1.0])),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: {type(exc).__name__}: {exc}") from exc
        if budget.period not in PERIODS:
            raise ConfigError(f"{where}: period must be one of {PERIODS}")
        if budget.metric not in METRICS:
            raise ConfigError(f"{where}: metric must be one of {METRICS}")
        if budget.tenant is None and budget.model is None:
            raise ConfigError(f"{where}: give a tenant, a model or both")
        if budget.limit <= 0 or not budget.thresholds:
            raise ConfigError(f"{where}: limit and thresholds must be positive")
        budgets.append(budget)
    if len({b.name for b in budgets}) != len(budgets):
        raise ConfigError(f"budgets_file {path}: budget names must be unique")
    return budgets


def period_ids(record: dict[str, Any]) -> dict[str, str]:
    moment = dt.datetime.fromtimestamp(record["window_start_ms"] / 1000, dt.UTC)
    return {"day": f"{moment:%Y-%m-%d}", "month": f"{moment:%Y-%m}"}


class LiveCounters:
    """Counts records into Redis and raises budget alerts."""

    def __init__(
        self, redis: Any, prefix: str, ttl_s: int, budgets: list[Budget]
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.budgets = budgets
        self._count = redis.register_script(COUNT_ONCE)

    async def count(self, records: list[dict[str, Any]], ids: list[str]) -> int:
        """Add each record once; returns how many were new to Redis."""
        p = self.prefix
        async with self.redis.pipeline(transaction=False) as pipe:
            for record, record_id in zip(records, ids, strict=True):
                model = model_name(record)
                keys = [f"{p}:applied:{record_id}"]
                zsets = []
                for period_id in period_ids(record).values():
                    keys += [
                        f"{p}:usage:{period_id}:tenant:{record['tenant']}",
                        f"{p}:usage:{period_id}:model:{record['tenant']}:{model}",
                        f"{p}:usage:{period_id}:model:*:{model}",
                    ]
                    zsets.append(f"{p}:cost_by_model:{period_id}:{record['tenant']}")
                args = [
                    self.ttl_s,
                    str(record["cost"]),
                    record["requests"],
                    record["input_tokens"],
                    record["output_tokens"],
                    model,
                    record["input_tokens"] + record["output_tokens"],
                ]
                await self._count(keys=keys + zsets, args=args, client=pipe)
            results = await pipe.execute(raise_on_error=False)
        counted = 0
        for record_id, result in zip(ids, results, strict=True):
            if isinstance(result, Exception):
                # PostgreSQL already holds the record; the live view of one
                # record must not stop the sink.
                log.warning(
                    "live counters skipped %s: %s", record_id, type(result).__name__
                )
                continue
            counted += int(result)
        return counted

    async def crossings(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Alerts for thresholds newly crossed by the budgets these records touch."""
        touched: set[tuple[Budget, str]] = set()
        for record in records:
            periods = period_ids(record)
            for budget in self.budgets:
                if budget.matches(record):
                    touched.add((budget, periods[budget.period]))

        alerts = []
        for budget, period_id in sorted(touched, key=lambda t: (t[0].name, t[1])):
            key = budget.usage_key(self.prefix, period_id)
            used = float(await self.redis.hget(key, budget.metric) or 0)
            for threshold in sorted(budget.thresholds):
                if used < threshold * budget.limit:
                    break
                alerts.append(_alert(budget, period_id, threshold, used))
        return alerts

    async def due(self, alert: dict[str, Any]) -> bool:
        """True when ``alert`` is to be produced: claimed now, or left pending."""
        key = self._alert_key(alert)
        if await self.redis.set(key, PENDING, nx=True, ex=self.ttl_s):
            return True
        # Any other value (older versions stored the usage) means sent.
        return bool(await self.redis.get(key) == PENDING)

    async def sent(self, alert: dict[str, Any]) -> None:
        """Kafka confirmed ``alert``: never produce it again."""
        await self.redis.set(self._alert_key(alert), SENT, ex=self.ttl_s)

    def _alert_key(self, alert: dict[str, Any]) -> str:
        return (
            f"{self.prefix}:alert:{alert['budget']}:{alert['period_id']}:"
            f"{alert['threshold']}"
        )


def _alert(
    budget: Budget, period_id: str, threshold: float, used: float
) -> dict[str, Any]:
    return {
        # The same for every send of this crossing: consumers drop repeats.
        "alert_id": f"{budget.name}/{period_id}/{threshold}",
        "budget": budget.name,
        "tenant": budget.tenant,
        "model": budget.model,
        "metric": budget.metric,
        "period": budget.period,
        "period_id": period_id,
        "threshold": threshold,
        "limit": budget.limit,
        "used": used,
    }
