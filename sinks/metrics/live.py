"""Live counters of today's and this month's usage in Redis, and budget alerts.

Keys (``<p>`` is the ``redis_prefix``, ``<period>`` a UTC day ``2025-01-31``
or month ``2025-01``):

- ``<p>:usage:<period>:tenant:<tenant>`` hash: requests, input_tokens,
  output_tokens, tokens (input + output), and per currency ``cost_usd_nano``
  (integer nano-units, what budgets compare) with ``cost_usd`` (the same
  amount as an exact decimal string, for reading)
- ``<p>:usage:<period>:model:<tenant>:<provider>/<model>`` hash: same fields
- ``<p>:usage:<period>:model:*:<provider>/<model>`` hash: all tenants
- ``<p>:cost_nano_by_model:<period>:<tenant>:<currency>`` sorted set:
  ``<provider>/<model>`` -> cost in nano-units (a sorted set's score is a
  double: exact up to 2**53 nano-units, about nine million)
- ``<p>:applied:<record identity>``: marker that the record was counted
- ``<p>:alert:<budget>:<period>:<threshold>``: ``pending`` while the alert of
  a crossing is being sent, ``sent`` once Kafka confirmed it

A record is counted at most once and never in part: a Lua script checks the
marker and every increment first (types, integers, no overflow), refuses the
record before any write when one would fail, and sets the marker last. An
alert is claimed as pending before it is produced and marked sent after Kafka
confirms it; a pending alert found again (its sender died in between) is sent
again, with the same ``alert_id``, so it goes out at least once and consumers
drop repeats by that id.

Tenant, provider, model and budget names are written with ``%``, ``:`` and
``*`` percent-encoded (and ``/`` in a provider), so that no name can pose as
another key's part: tenant ``*`` is ``%2A``, never the all-tenants hash.
"""

from __future__ import annotations

import datetime as dt
import logging
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from sinks.metrics.budgets import DEFAULT_CURRENCY, Budget, alert

log = logging.getLogger(__name__)

PENDING = b"pending"
SENT = b"sent"
NANO = Decimal(10) ** 9
# HINCRBY's range; a count past it is not a count.
INT64_MAX = 2**63 - 1

# KEYS: the marker, the usage hashes, then the two sorted sets.
# ARGV: ttl_s, cost nano-units, requests, input tokens, output tokens,
# sorted-set member, tokens, cost nano field, cost decimal field,
# "1" when the currency may take over a float "cost" field.
COUNT_ONCE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local nano_field, decimal_field = ARGV[8], ARGV[9]
local adds = {
  {'requests', ARGV[3]}, {'input_tokens', ARGV[4]},
  {'output_tokens', ARGV[5]}, {'tokens', ARGV[7]}, {nano_field, ARGV[2]}
}
-- Older versions kept a float 'cost'; its nano-units seed the new field.
local function seed(key)
  if ARGV[10] ~= '1' or redis.call('HEXISTS', key, nano_field) == 1 then
    return nil
  end
  local old = tonumber(redis.call('HGET', key, 'cost') or '')
  if old == nil then return nil end
  return string.format('%.0f', math.floor(old * 1e9 + 0.5))
end

-- Every check before the first write: Redis does not roll a script back.
for i = 2, #KEYS do
  local kind = redis.call('TYPE', KEYS[i]).ok
  local want = (i > #KEYS - 2) and 'zset' or 'hash'
  if kind ~= want and kind ~= 'none' then
    return redis.error_reply('WRONGTYPE ' .. KEYS[i] .. ' is a ' .. kind)
  end
end
for i = 2, #KEYS - 2 do
  for _, add in ipairs(adds) do
    local value = redis.call('HGET', KEYS[i], add[1])
    if add[1] == nano_field then value = value or seed(KEYS[i]) end
    if value and not string.match(value, '^%-?%d+$') then
      return redis.error_reply('not an integer: ' .. KEYS[i] .. ' ' .. add[1])
    end
    -- Doubles: refuse a little before the true limit rather than after.
    if tonumber(value or '0') + tonumber(add[2]) > 9.2e18 then
      return redis.error_reply('would overflow: ' .. KEYS[i] .. ' ' .. add[1])
    end
  end
end

local function decimal(digits)
  if #digits < 10 then digits = string.rep('0', 10 - #digits) .. digits end
  return string.sub(digits, 1, -10) .. '.' .. string.sub(digits, -9)
end
for i = 2, #KEYS - 2 do
  local key = KEYS[i]
  local seeded = seed(key)
  if seeded then
    redis.call('HSET', key, nano_field, seeded)
    redis.call('HDEL', key, 'cost')
  end
  for _, add in ipairs(adds) do redis.call('HINCRBY', key, add[1], add[2]) end
  redis.call('HSET', key, decimal_field, decimal(redis.call('HGET', key, nano_field)))
  redis.call('EXPIRE', key, ARGV[1])
end
for i = #KEYS - 1, #KEYS do
  redis.call('ZINCRBY', KEYS[i], ARGV[2], ARGV[6])
  redis.call('EXPIRE', KEYS[i], ARGV[1])
end
redis.call('SET', KEYS[1], '1', 'EX', ARGV[1])
return 1
"""


def key_part(name: str, also: str = "") -> str:
    """``name`` as one part of a key: ``%``, ``:``, ``*`` and ``also`` encoded."""
    for char in "%:*" + also:
        if char in name:
            name = name.replace(char, f"%{ord(char):02X}")
    return name


def model_part(provider: str, model: str) -> str:
    """``<provider>/<model>``, the provider's own ``/`` encoded."""
    return f"{key_part(provider, '/')}/{key_part(model)}"


def nano_units(amount: Decimal) -> int:
    """``amount`` in integer nano-units, rounded half to even."""
    return int((amount * NANO).to_integral_value(ROUND_HALF_EVEN))


def cost_fields(currency: str) -> tuple[str, str]:
    """The hash fields of a currency's cost: nano-units, exact decimal."""
    name = f"cost_{currency.lower()}"
    return f"{name}_nano", name


def period_ids(record: dict[str, Any]) -> dict[str, str]:
    moment = dt.datetime.fromtimestamp(record["window_start_ms"] / 1000, dt.UTC)
    return {"day": f"{moment:%Y-%m-%d}", "month": f"{moment:%Y-%m}"}


def refusal(record: dict[str, Any]) -> str | None:
    """Why Redis could not add ``record``'s counts, or None."""
    counts = {
        name: record[name] for name in ("requests", "input_tokens", "output_tokens")
    }
    counts["tokens"] = counts["input_tokens"] + counts["output_tokens"]
    counts["cost"] = nano_units(record["cost"])
    for name, value in counts.items():
        if not 0 <= value <= INT64_MAX:
            return f"{name} {value} out of range"
    return None


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

    def usage_key(
        self, period_id: str, tenant: str | None, model: tuple[str, str] | None
    ) -> str:
        """The usage hash of a tenant, a tenant's (provider, model), or a model
        over all tenants (``tenant`` None)."""
        p = self.prefix
        who = "*" if tenant is None else key_part(tenant)
        if model is None:
            return f"{p}:usage:{period_id}:tenant:{who}"
        return f"{p}:usage:{period_id}:model:{who}:{model_part(*model)}"

    async def count(self, records: list[dict[str, Any]], ids: list[str]) -> int:
        """Add each record once; returns how many were new to Redis."""
        p = self.prefix
        sent = []
        async with self.redis.pipeline(transaction=False) as pipe:
            for record, record_id in zip(records, ids, strict=True):
                why = refusal(record)
                if why is not None:
                    log.warning("live counters skipped %s: %s", record_id, why)
                    continue
                tenant = record["tenant"]
                model = (record["provider"], record["model"])
                currency = record.get("currency") or DEFAULT_CURRENCY
                keys = [f"{p}:applied:{record_id}"]
                zsets = []
                for period_id in period_ids(record).values():
                    keys += [
                        self.usage_key(period_id, tenant, None),
                        self.usage_key(period_id, tenant, model),
                        self.usage_key(period_id, None, model),
                    ]
                    zsets.append(
                        f"{p}:cost_nano_by_model:{period_id}:"
                        f"{key_part(tenant)}:{key_part(currency)}"
                    )
                args = [
                    self.ttl_s,
                    nano_units(record["cost"]),
                    record["requests"],
                    record["input_tokens"],
                    record["output_tokens"],
                    model_part(*model),
                    record["input_tokens"] + record["output_tokens"],
                    *cost_fields(currency),
                    "1" if currency == DEFAULT_CURRENCY else "0",
                ]
                await self._count(keys=keys + zsets, args=args, client=pipe)
                sent.append(record_id)
            results = await pipe.execute(raise_on_error=False)
        counted = 0
        for record_id, result in zip(sent, results, strict=True):
            if isinstance(result, Exception):
                # Refused before any write: PostgreSQL holds the record, and
                # the live view of one record must not stop the sink.
                log.warning("live counters skipped %s: %s", record_id, result)
                continue
            counted += int(result)
        return counted

    async def crossings(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Alerts for the thresholds reached by the budgets these records touch."""
        touched: set[tuple[Budget, str]] = set()
        for record in records:
            periods = period_ids(record)
            for budget in self.budgets:
                if budget.matches(record):
                    touched.add((budget, periods[budget.period]))

        alerts = []
        for budget, period_id in sorted(touched, key=lambda t: (t[0].name, t[1])):
            used = await self._used(budget, period_id)
            for threshold in sorted(budget.thresholds):
                if not budget.reached(used, threshold):
                    break
                alerts.append(alert(budget, period_id, threshold, used))
        return alerts

    async def _used(self, budget: Budget, period_id: str) -> Decimal:
        key = self.usage_key(period_id, budget.tenant, budget.provider_model)
        if budget.metric != "cost":
            return Decimal(int(await self.redis.hget(key, budget.metric) or 0))
        nano_field, _ = cost_fields(budget.currency)
        return Decimal(int(await self.redis.hget(key, nano_field) or 0)) / NANO

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
            f"{self.prefix}:alert:{key_part(alert['budget'])}:{alert['period_id']}:"
            f"{alert['threshold']}"
        )
