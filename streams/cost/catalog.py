"""The maintained price catalog: the ``genai-prices`` package's bundled data.

The bundled snapshot works offline and is versioned with the package, so the
version pinned in pyproject.toml names the prices every record was priced
with. This module is the only one that touches genai-prices: it maps our
provider names to the catalog's, finds a model entry for a name, and turns
the entry's prices at a given time into ``Rates``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Any

import genai_prices
from genai_prices import data_snapshot, types

from streams.cost.rates import Rate, Rates

log = logging.getLogger(__name__)

CATALOG = f"genai-prices {genai_prices.__version__}"
CURRENCY = "USD"

# OpenTelemetry gen_ai.provider.name (as the normalizer emits it) -> catalog
# provider. Azure and Vertex are their own providers in the catalog, which
# falls back to the model vendor's prices where it has no entry of its own.
CATALOG_PROVIDERS: dict[str, str] = {
    "openai": "openai",
    "azure.ai.openai": "azure",
    "azure.ai.inference": "azure",
    "anthropic": "anthropic",
    "aws.bedrock": "aws",
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "mistral_ai": "mistral",
    "cohere": "cohere",
    "deepseek": "deepseek",
    "groq": "groq",
    "perplexity": "perplexity",
    "x_ai": "x-ai",
}


@dataclass(frozen=True)
class Entry:
    """One catalog model entry and the provider whose list holds it."""

    provider: str
    model_id: str
    info: Any  # genai_prices.types.ModelInfo
    static_rates: Rates | None  # set when the entry's prices never change
    # Prices of the entry that spans carry no count for, e.g. "web searches"
    not_charged: tuple[str, ...] = ()

    def rates_at(self, when: datetime) -> Rates:
        if self.static_rates is not None:
            return self.static_rates
        prices = self.info.get_prices(when)
        # The catalog's price objects live as long as the process.
        rates = _converted.get(id(prices))
        if rates is None:
            rates = _converted[id(prices)] = _to_rates(prices)
        return rates


_converted: dict[int, Rates] = {}


def provider_id(provider: str | None) -> str | None:
    """The catalog provider for one of our provider names, if it has one."""
    if not provider:
        return None
    mapped = CATALOG_PROVIDERS.get(provider)
    if mapped is not None:
        return mapped
    return provider if _provider(provider) is not None else None


def infer_provider(model: str) -> str | None:
    """The catalog provider whose model names look like ``model``, if any."""
    try:
        found = _snapshot().find_provider(model.lower(), None, None)
    except LookupError:
        return None
    return str(found.id)


def find(catalog_provider: str, model: str) -> Entry | None:
    """The entry the catalog matches to ``model`` under ``catalog_provider``."""
    provider = _provider(catalog_provider)
    if provider is None:
        return None
    info = provider.find_model(model, all_providers=_snapshot().providers)
    if info is None:
        return None
    return _entry(provider, info)


def _entry(provider: Any, info: Any) -> Entry:
    holder = provider.id
    if not any(m is info for m in provider.models):
        for fallback in provider.fallback_model_providers or ():
            other = _provider(fallback)
            if other is not None and any(m is info for m in other.models):
                holder = other.id
                break
    static = None
    if isinstance(info.prices, types.ModelPrice):
        static = _to_rates(info.prices)
    return Entry(holder, info.id, info, static, _not_charged(info))


def _not_charged(info: Any) -> tuple[str, ...]:
    """The entry's prices that no count of a span reaches, as words."""
    if isinstance(info.prices, types.ModelPrice):
        all_prices = [info.prices]
    else:
        all_prices = [conditional.prices for conditional in info.prices]
    keys = {
        key
        for prices in all_prices
        for key, value in vars(prices).items()
        if value is not None and not key.startswith("_")
    }
    parts = sorted(_words(key) for key in keys - _CHARGED_KEYS)
    variants = sorted(
        {name.replace("_", " ") for v in info.price_variants or () for name in v.when}
    )
    if variants:
        parts.append(f"{' or '.join(variants)} prices (standard used)")
    return tuple(parts)


def _words(price_key: str) -> str:
    """``cache_write_1h_mtok`` -> ``cache write 1h``."""
    for unit in ("_mtok", "_kcount", "_hours", "_mchars", "_kpages"):
        price_key = price_key.removesuffix(unit)
    return price_key.replace("_", " ")


def listed_names(entry: Entry) -> tuple[str, ...]:
    """The model names the entry matches exactly (not by prefix or pattern)."""
    found: list[str] = []
    pending = [entry.info.match]
    while pending:
        clause = pending.pop()
        if isinstance(clause, types.ClauseEquals):
            found.append(clause.equals)
        elif isinstance(clause, types.ClauseOr):
            pending.extend(clause.or_)
    return tuple(sorted(found))


def pattern_of(entry: Entry, name: str) -> str | None:
    """How the entry's pattern took ``name``, or None where it lists ``name``.

    A pattern can take a model it does not price: ``contains
    gemini-1.5-flash`` takes gemini-1.5-flash-8b, priced at twice its rate.
    """
    if name == entry.model_id or name in listed_names(entry):
        return None
    pending = [entry.info.match]
    while pending:
        clause = pending.pop()
        if isinstance(clause, types.ClauseOr):
            pending.extend(clause.or_)
        elif clause.is_match(name):
            return _describe(clause)
    return "pattern"


def _describe(clause: Any) -> str:
    for kind, attribute in (
        (types.ClauseStartsWith, "starts_with"),
        (types.ClauseEndsWith, "ends_with"),
        (types.ClauseContains, "contains"),
        (types.ClauseRegex, "regex"),
    ):
        if isinstance(clause, kind):
            return f"{attribute.replace('_', ' ')} {getattr(clause, attribute)}"
    return "pattern"


@cache
def _snapshot() -> Any:
    return data_snapshot.get_snapshot()


@cache
def _provider(catalog_provider: str) -> Any:
    for provider in _snapshot().providers:
        if provider.id == catalog_provider:
            return provider
    return None


# Catalog prices that ``Rates`` charges; any other is named in the match.
_CHARGED_KEYS = frozenset(
    {
        "input_mtok",
        "output_mtok",
        "cache_read_mtok",
        "cache_write_mtok",
        "output_reasoning_mtok",
        "requests_kcount",
    }
)


def _to_rates(prices: Any) -> Rates:
    return Rates(
        currency=CURRENCY,
        input=_rate(getattr(prices, "input_mtok", None)),
        output=_rate(getattr(prices, "output_mtok", None)),
        cache_read=_rate(getattr(prices, "cache_read_mtok", None)),
        cache_write=_rate(getattr(prices, "cache_write_mtok", None)),
        reasoning=_rate(getattr(prices, "output_reasoning_mtok", None)),
        request=_per_request(getattr(prices, "requests_kcount", None)),
    )


def _per_request(price_kcount: Any) -> Decimal | None:
    """The catalog writes request fees per thousand requests."""
    if not isinstance(price_kcount, Decimal):
        return None
    return price_kcount.scaleb(-3)


def _rate(price: Any) -> Rate | None:
    if price is None:
        return None
    if isinstance(price, Decimal):
        return Rate(price)
    if isinstance(price, types.TieredPrices):
        tiers = tuple((int(t.start), Decimal(t.price)) for t in price.tiers)
        return Rate(Decimal(price.base), tiers)
    log.warning("ignoring catalog price of unknown type %s", type(price).__name__)
    return None
