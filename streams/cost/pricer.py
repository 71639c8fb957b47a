"""``Pricer``: the ``cost`` record of one span from its normalized GenAI fields.

Called by the decode stage for every span, so the name resolution (alias,
operator prices, catalog entry) is cached per (provider, model, tenant) and
the per-span work is a few Decimal products.

The rules, in order:
1. No GenAI record: no cost record. An operation that is not a model call
   (tools, agents, workflows, retrieval) is ``not_llm_call``: agent spans
   often repeat their children's usage, which must not be billed twice.
2. A token count the normalizer rejected (``invalid_tokens:<field>``), or
   counts that contradict the OTel semantics, is ``invalid_usage``.
3. Missing counts, or none but zeros, are ``no_usage``: never priced as zero.
4. The response model is preferred to the request model (an Azure request
   names a deployment, the response names the model that ran), except where
   it is the bare name of the request's Bedrock id, whose prefix decides
   the price.
5. An operator alias renames the model; operator prices win over the
   catalog; a discount scales catalog prices. No entry: ``unknown_model``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from llmobs.errors import ConfigError
from streams.cost import catalog, overrides
from streams.cost.lookup import find_in_catalog
from streams.cost.models import bedrock_id_of, candidates
from streams.cost.rates import (
    MONEY,
    MissingRate,
    Rates,
    Usage,
    compute,
    quantize,
)

log = logging.getLogger(__name__)

PRICED = "priced"
UNKNOWN_MODEL = "unknown_model"
NO_USAGE = "no_usage"
INVALID_USAGE = "invalid_usage"
NOT_LLM_CALL = "not_llm_call"
STATUSES = (PRICED, UNKNOWN_MODEL, NO_USAGE, INVALID_USAGE, NOT_LLM_CALL)

NOT_MODEL_CALLS = frozenset(
    {"execute_tool", "retrieval", "create_agent", "invoke_agent", "invoke_workflow"}
)
INPUT_ONLY = frozenset({"embeddings", "rerank"})
# Above this a reported cost is garbage, and would not fit the decimal.
MAX_REPORTED_COST = 1e15


@dataclass(frozen=True)
class Resolution:
    """Where the prices of one (provider, model, tenant) come from."""

    model: str
    provider: str | None
    steps: tuple[str, ...]
    override: tuple[overrides.PriceEntry, ...] = ()
    override_how: str = ""
    entry: catalog.Entry | None = None
    catalog_how: str = ""  # how the entry was found, or why none was
    discounts: tuple[overrides.Discount, ...] = ()


class Pricer:
    """Prices spans from the catalog and an optional operator prices file."""

    def __init__(self, overrides_path: Path | None = None) -> None:
        self.overrides = (
            overrides.load(overrides_path)
            if overrides_path is not None
            else overrides.Overrides(source="")
        )
        self._by_tenant = any(
            item.tenant is not None
            for group in (
                self.overrides.aliases,
                self.overrides.prices,
                self.overrides.discounts,
            )
            for item in group
        )
        self._check_aliases(str(overrides_path))
        self._resolve = lru_cache(maxsize=16384)(self._resolve_uncached)
        log.info(
            "pricing with %s%s",
            catalog.CATALOG,
            f" and {overrides_path}" if overrides_path is not None else "",
        )

    @classmethod
    def from_settings(cls, settings: Any) -> Pricer:
        """A pricer for a settings object with a ``prices_file`` setting."""
        path = getattr(settings, "prices_file", None)
        return cls(Path(path) if path else None)

    def price(
        self, genai: dict[str, Any] | None, start_unix_nano: int, tenant: str
    ) -> dict[str, Any] | None:
        """The span's ``cost`` record, or None for a span with no GenAI fields."""
        if genai is None:
            return None
        try:
            return self._price(genai, start_unix_nano, tenant)
        except Exception as exc:  # a span must never stop the stage
            log.warning("pricing failed: %s", type(exc).__name__)
            reason = f"pricing failed: {type(exc).__name__}"
            return _unpriced(UNKNOWN_MODEL, reason, None)

    def _price(
        self, genai: dict[str, Any], start_unix_nano: int, tenant: str
    ) -> dict[str, Any]:
        reported = _reported(genai.get("reported_cost"))

        operation = genai.get("operation")
        if operation in NOT_MODEL_CALLS:
            return _unpriced(NOT_LLM_CALL, f"operation {operation}", reported)

        usage = _usage(genai, operation)
        if isinstance(usage, tuple):
            status, reason = usage
            return _unpriced(status, reason, reported)

        provider = genai.get("provider")
        model = _model_to_price(genai.get("request_model"), genai.get("response_model"))
        if not model:
            return _unpriced(UNKNOWN_MODEL, "no model name", reported)
        resolution = self._resolve(provider, model, tenant if self._by_tenant else "")
        return self._priced(resolution, usage, start_unix_nano, reported)

    def resolve(self, provider: str | None, model: str, tenant: str) -> Resolution:
        """Which entry prices ``model`` for ``tenant``, and why (cached)."""
        return self._resolve(provider, model, tenant if self._by_tenant else "")

    def rates_for(
        self, provider: str | None, model: str, tenant: str, start_unix_nano: int
    ) -> tuple[Rates, str, str | None, str, str] | None:
        """(rates, catalog, matched provider, matched model, match), or None."""
        return self._rates(self.resolve(provider, model, tenant), start_unix_nano)

    def _priced(
        self,
        resolution: Resolution,
        usage: Usage,
        start_unix_nano: int,
        reported: Decimal | None,
    ) -> dict[str, Any]:
        found = self._rates(resolution, start_unix_nano)
        if found is None:
            where = f" (provider {resolution.provider})" if resolution.provider else ""
            reason = f"no price for {resolution.model}{where}"
            if resolution.catalog_how:
                reason = f"{reason}: {resolution.catalog_how}"
            return _unpriced(UNKNOWN_MODEL, reason, reported)
        rates, source, matched_provider, matched_model, match = found

        try:
            amounts = compute(rates, usage)
        except MissingRate as exc:
            reason = f"{match}; entry {matched_model} has no {exc.args[0]} price"
            return _unpriced(UNKNOWN_MODEL, reason, reported)
        return {
            "status": PRICED,
            "currency": rates.currency,
            "input_cost": amounts.input,
            "cache_read_cost": amounts.cache_read,
            "cache_write_cost": amounts.cache_write,
            "output_cost": amounts.output,
            "reasoning_cost": amounts.reasoning,
            "request_cost": amounts.request,
            "total_cost": amounts.total,
            "catalog": source,
            "matched_provider": matched_provider,
            "matched_model": matched_model,
            "match": match,
            "reported_cost": reported,
        }

    def _rates(
        self, resolution: Resolution, start_unix_nano: int
    ) -> tuple[Rates, str, str | None, str, str] | None:
        """(rates, catalog, matched provider, matched model, match) at the time."""
        steps = list(resolution.steps)
        when = None
        if resolution.override:
            when = _when(start_unix_nano)
            chosen = overrides.active_price(resolution.override, when.date())
            if chosen is not None:
                steps.append(f"{resolution.override_how} ({chosen.label})")
                return (
                    chosen.rates,
                    self.overrides.source,
                    chosen.provider or resolution.provider,
                    chosen.model,
                    "; ".join(steps),
                )

        entry = resolution.entry
        if entry is None:
            return None
        if entry.static_rates is not None:
            rates = entry.static_rates
        else:
            when = when or _when(start_unix_nano)
            rates = entry.rates_at(when)
        steps.append(resolution.catalog_how)
        source = catalog.CATALOG

        if resolution.discounts:
            day = (when or _when(start_unix_nano)).date()
            for discount in resolution.discounts:
                if discount.effective is None or discount.effective <= day:
                    rates = rates.discounted(discount.factor)
                    steps.append(f"{discount.label}: {discount.percent}% off")
                    source = f"{catalog.CATALOG} + {self.overrides.source}"
                    break
        return rates, source, entry.provider, entry.model_id, "; ".join(steps)

    def _check_aliases(self, where: str) -> None:
        """Refuse at start an alias whose model no price list knows."""
        priced = {p.model for p in self.overrides.prices}
        for alias in self.overrides.aliases:
            names = candidates(alias.model)
            if any(name in priced for name, _ in names):
                continue
            provider = alias.model_provider or alias.provider
            if find_in_catalog(provider, alias.model, names)[0] is not None:
                continue
            under = f" under provider {provider}" if provider else ""
            raise ConfigError(
                f"prices file {where}: {alias.label} ({alias.name}): model"
                f" {alias.model} has no price{under} in {catalog.CATALOG}"
                " nor in the prices file"
            )

    def _resolve_uncached(
        self, provider: str | None, model: str, tenant: str
    ) -> Resolution:
        steps: list[str] = []
        alias = self.overrides.alias(provider, model, tenant)
        if alias is not None:
            steps.append(f"alias {model} -> {alias.model} ({alias.label})")
            model = alias.model
            provider = alias.model_provider or provider
        names = candidates(model)

        override: tuple[overrides.PriceEntry, ...] = ()
        override_how = ""
        for name, how in names:
            found = self.overrides.prices_for(provider, name, tenant)
            if found:
                override, override_how = tuple(found), f"operator price, {how}"
                break

        entry, catalog_how = find_in_catalog(provider, model, names)
        discounts: tuple[overrides.Discount, ...] = ()
        if entry is not None:
            matched = {n for n, _ in names} | {entry.model_id.lower()}
            discounts = tuple(self.overrides.discounts_for(provider, matched, tenant))
        return Resolution(
            model=model,
            provider=provider,
            steps=tuple(steps),
            override=override,
            override_how=override_how,
            entry=entry,
            catalog_how=catalog_how,
            discounts=discounts,
        )


def _model_to_price(request: str | None, response: str | None) -> str | None:
    if request and response and bedrock_id_of(request, response):
        return request
    return response or request


def _usage(genai: dict[str, Any], operation: str | None) -> Usage | tuple[str, str]:
    """Token counts to price, or (status, reason) when they cannot be priced."""
    invalid = [
        issue
        for issue in genai.get("issues") or ()
        if issue.startswith("invalid_tokens:")
        and issue != "invalid_tokens:total_tokens"
    ]
    if invalid:
        return INVALID_USAGE, ", ".join(invalid)

    input_tokens = genai.get("input_tokens")
    output_tokens = genai.get("output_tokens")
    if input_tokens is None:
        return NO_USAGE, "no input token count"
    if output_tokens is None:
        if operation not in INPUT_ONLY:
            return NO_USAGE, "no output token count"
        output_tokens = 0

    cache_read = genai.get("cache_read_tokens") or 0
    cache_write = genai.get("cache_write_tokens") or 0
    reasoning = genai.get("reasoning_tokens") or 0
    counts = (input_tokens, output_tokens, cache_read, cache_write, reasoning)
    if any(type(c) is not int or c < 0 for c in counts):
        return INVALID_USAGE, "token counts must be non-negative integers"
    if input_tokens == 0 and output_tokens == 0:
        # What instrumentations send when the provider returned no usage.
        return NO_USAGE, "all token counts are zero"
    if cache_read + cache_write > input_tokens:
        return INVALID_USAGE, "cache tokens exceed input tokens"
    if reasoning > output_tokens:
        return INVALID_USAGE, "reasoning tokens exceed output tokens"
    return Usage(input_tokens, output_tokens, cache_read, cache_write, reasoning)


def _unpriced(status: str, reason: str, reported: Decimal | None) -> dict[str, Any]:
    return {
        "status": status,
        "currency": None,
        "input_cost": None,
        "cache_read_cost": None,
        "cache_write_cost": None,
        "output_cost": None,
        "reasoning_cost": None,
        "request_cost": None,
        "total_cost": None,
        "catalog": catalog.CATALOG,
        "matched_provider": None,
        "matched_model": None,
        "match": reason,
        "reported_cost": reported,
    }


def _reported(value: Any) -> Decimal | None:
    """The instrumentation's own figure, as the decimal it was written as."""
    if type(value) not in (int, float) or not 0 <= value < MAX_REPORTED_COST:
        return None
    # repr() is the shortest text that reads back as the same float.
    return quantize(MONEY.create_decimal(repr(value)))


def _when(start_unix_nano: int) -> datetime:
    try:
        return datetime.fromtimestamp(start_unix_nano / 1e9, UTC)
    except (OverflowError, OSError, ValueError):
        return datetime.now(UTC)
