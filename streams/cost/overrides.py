"""The operator's prices file: aliases, private prices and negotiated discounts.

A YAML mapping with three optional lists (see README "Cost")::

    aliases:        # names spans carry -> the model they stand for
      - {name: gpt-prod, provider: azure.ai.openai, model: gpt-4o}
    prices:         # models the catalog lacks, or prices that replace it
      - {model: llama-3.1-70b-internal, provider: vllm, tenant: acme,
         from: 2025-01-01, currency: EUR, input_mtok: 0.4, output_mtok: 0.8}
    discounts:      # a percentage off the catalog price
      - {provider: openai, tenant: acme, percent: 15}

Provider names are brought to the spelling spans get (``OpenAI`` and
``openai`` are ``openai``, ``azure`` is ``azure.ai.openai``); model names
compare case-insensitively. Read and validated once at start: any mistake,
and two entries for the same thing, raise ConfigError naming the file, the
entries and the key. (Alias targets are checked by the ``Pricer``, which
knows the catalog.)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from llmobs.errors import ConfigError
from streams.cost.rates import Rate, Rates
from streams.parsers import canonical_provider

DEFAULT_CURRENCY = "USD"
# No list price comes near this per million tokens; a larger one is a typo.
MAX_PRICE_MTOK = Decimal(1_000_000)

_SECTIONS = ("aliases", "prices", "discounts")
_ALIAS_KEYS = {"name", "provider", "tenant", "model", "model_provider"}
_RATE_KEYS = (
    "input_mtok",
    "output_mtok",
    "cache_read_mtok",
    "cache_write_mtok",
    "reasoning_mtok",
)
_PRICE_KEYS = {"model", "provider", "tenant", "from", "currency", *_RATE_KEYS}
_DISCOUNT_KEYS = {"model", "provider", "tenant", "from", "percent"}


@dataclass(frozen=True)
class Alias:
    label: str
    name: str
    model: str
    provider: str | None = None
    tenant: str | None = None
    model_provider: str | None = None


@dataclass(frozen=True)
class PriceEntry:
    label: str
    model: str
    rates: Rates
    provider: str | None = None
    tenant: str | None = None
    effective: date | None = None


@dataclass(frozen=True)
class Discount:
    label: str
    percent: Decimal
    model: str | None = None
    provider: str | None = None
    tenant: str | None = None
    effective: date | None = None

    @property
    def factor(self) -> Decimal:
        return (100 - self.percent) / 100


@dataclass
class Overrides:
    """The validated prices file, indexed for lookups by model name."""

    source: str
    aliases: list[Alias] = field(default_factory=list)
    prices: list[PriceEntry] = field(default_factory=list)
    discounts: list[Discount] = field(default_factory=list)

    def alias(self, provider: str | None, name: str, tenant: str) -> Alias | None:
        """The alias for ``name``, a tenant's own before everyone's."""
        lowered = name.strip().lower()
        found = [
            a
            for a in self.aliases
            if a.name == lowered
            and _applies(a.provider, provider)
            and _applies(a.tenant, tenant)
        ]
        return _most_specific(found)

    def prices_for(
        self, provider: str | None, model: str, tenant: str
    ) -> list[PriceEntry]:
        """Dated entries for ``model``: the tenant's own, then everyone's."""
        return [
            p
            for p in self.prices
            if p.model == model
            and _applies(p.provider, provider)
            and _applies(p.tenant, tenant)
        ]

    def discounts_for(
        self, provider: str | None, models: Iterable[str], tenant: str
    ) -> list[Discount]:
        """Discounts that apply to any of ``models``, most specific first."""
        names = set(models)
        found = [
            d
            for d in self.discounts
            if (d.model is None or d.model in names)
            and _applies(d.provider, provider)
            and _applies(d.tenant, tenant)
        ]
        return sorted(
            found,
            key=lambda d: (
                d.tenant is None,
                d.model is None,
                -(d.effective or date.min).toordinal(),
            ),
        )


def load(path: Path) -> Overrides:
    """Read and validate the prices file at ``path``."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"prices file {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text) or {}
    except (yaml.YAMLError, ValueError) as exc:
        raise ConfigError(f"prices file {path} is not valid YAML: {exc}") from exc
    return parse(data, path.name, where=str(path))


def parse(data: Any, name: str, where: str | None = None) -> Overrides:
    """Validate already-loaded YAML ``data``; ``name`` labels the records."""
    where = where or name
    if not isinstance(data, dict):
        raise ConfigError(f"prices file {where} must hold a mapping")
    unknown = sorted(set(data) - set(_SECTIONS))
    if unknown:
        raise ConfigError(
            f"prices file {where}: unknown section(s) {', '.join(map(str, unknown))}"
            f"; expected {', '.join(_SECTIONS)}"
        )
    overrides = Overrides(source=f"override:{name}")
    for index, raw in enumerate(_section(data, "aliases", where)):
        overrides.aliases.append(_alias(raw, f"aliases[{index}]", where))
    for index, raw in enumerate(_section(data, "prices", where)):
        overrides.prices.append(_price(raw, f"prices[{index}]", where))
    for index, raw in enumerate(_section(data, "discounts", where)):
        overrides.discounts.append(_discount(raw, f"discounts[{index}]", where))
    _reject_duplicates(overrides, where)
    return overrides


def _reject_duplicates(overrides: Overrides, where: str) -> None:
    """Two entries for the same thing: which one wins would be an accident."""
    scoped = ("provider", "tenant", "from")
    groups: list[tuple[str, tuple[str, ...], list[tuple[str, tuple[Any, ...]]]]] = [
        (
            "alias",
            ("name", "provider", "tenant"),
            [(a.label, (a.name, a.provider, a.tenant)) for a in overrides.aliases],
        ),
        (
            "price",
            ("model", *scoped),
            [
                (p.label, (p.model, p.provider, p.tenant, p.effective))
                for p in overrides.prices
            ],
        ),
        (
            "discount",
            ("model", *scoped),
            [
                (d.label, (d.model, d.provider, d.tenant, d.effective))
                for d in overrides.discounts
            ],
        ),
    ]
    for kind, names, entries in groups:
        seen: dict[tuple[Any, ...], str] = {}
        for label, key in entries:
            first = seen.setdefault(key, label)
            if first == label:
                continue
            scope = ", ".join(
                f"{n} {v}" for n, v in zip(names, key, strict=True) if v is not None
            )
            raise ConfigError(
                f"prices file {where}: {first} and {label} are the same {kind}"
                f" ({scope}); keep one"
            )


def active_price(entries: Iterable[PriceEntry], day: date) -> PriceEntry | None:
    """The newest entry in force on ``day``, a tenant's own before everyone's.

    A tenant's price that starts later leaves the earlier days to the price
    everyone else pays, not to no price at all.
    """
    best: PriceEntry | None = None
    for entry in entries:
        if entry.effective is not None and entry.effective > day:
            continue
        if best is None or _precedence(entry) > _precedence(best):
            best = entry
    return best


def _precedence(entry: PriceEntry) -> tuple[bool, date]:
    return entry.tenant is not None, entry.effective or date.min


def _applies(scope: str | None, value: str | None) -> bool:
    return scope is None or scope == value


def _most_specific(found: list[Alias]) -> Alias | None:
    if not found:
        return None
    return min(found, key=lambda a: (a.tenant is None, a.provider is None))


def _section(data: dict[str, Any], key: str, where: str) -> list[Any]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(f"prices file {where}: {key} must be a list")
    return value


class _Entry:
    """Typed reads from one YAML entry, with errors naming entry and key."""

    def __init__(self, raw: Any, label: str, where: str, keys: set[str]) -> None:
        if not isinstance(raw, dict):
            raise ConfigError(f"prices file {where}: {label} must be a mapping")
        model = raw.get("model") or raw.get("name")
        self.prefix = f"prices file {where}: {label}" + (
            f" ({model})" if isinstance(model, str) else ""
        )
        unknown = sorted(str(k) for k in set(raw) - keys)
        if unknown:
            raise ConfigError(f"{self.prefix}: unknown key(s) {', '.join(unknown)}")
        self.raw = raw

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.prefix}: {key} {problem}, got {self.raw[key]!r}")

    def text(self, key: str, required: bool = False) -> str | None:
        value = self.raw.get(key)
        if value is None:
            if required:
                raise ConfigError(f"{self.prefix}: {key} is required")
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, "must be a non-empty string")
        return value.strip()

    def name(self, key: str, required: bool = False) -> str | None:
        value = self.text(key, required)
        return None if value is None else value.lower()

    def provider(self, key: str) -> str | None:
        """A provider in the spelling the normalizer gives spans."""
        value = self.text(key)
        return None if value is None else canonical_provider(value)

    def day(self, key: str) -> date | None:
        value = self.raw.get(key)
        if value is None:
            return None
        if isinstance(value, date):
            return value
        try:
            return date.fromisoformat(str(value))
        except ValueError:
            raise self.error(key, "must be a date YYYY-MM-DD") from None

    def amount(self, key: str, limit: Decimal) -> Decimal | None:
        value = self.raw.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise self.error(key, "must be a number")
        try:
            # str() keeps 0.1 as written instead of its binary expansion.
            number = Decimal(str(value).strip())
        except InvalidOperation:
            raise self.error(key, "must be a number") from None
        if not number.is_finite() or number < 0 or number > limit:
            raise self.error(key, f"must be between 0 and {limit}")
        return number


def _alias(raw: Any, label: str, where: str) -> Alias:
    entry = _Entry(raw, label, where, _ALIAS_KEYS)
    return Alias(
        label=label,
        name=entry.name("name", required=True) or "",
        model=entry.name("model", required=True) or "",
        provider=entry.provider("provider"),
        tenant=entry.text("tenant"),
        model_provider=entry.provider("model_provider"),
    )


def _price(raw: Any, label: str, where: str) -> PriceEntry:
    entry = _Entry(raw, label, where, _PRICE_KEYS)
    amounts = {key: entry.amount(key, MAX_PRICE_MTOK) for key in _RATE_KEYS}
    for key in ("input_mtok", "output_mtok"):
        if amounts[key] is None:
            raise ConfigError(f"{entry.prefix}: {key} is required")
    currency = entry.text("currency") or DEFAULT_CURRENCY
    if len(currency) != 3 or not currency.isalpha():
        raise entry.error("currency", "must be a three-letter code such as USD")
    rates = Rates(
        currency=currency.upper(),
        input=_rate(amounts["input_mtok"]),
        output=_rate(amounts["output_mtok"]),
        cache_read=_rate(amounts["cache_read_mtok"]),
        cache_write=_rate(amounts["cache_write_mtok"]),
        reasoning=_rate(amounts["reasoning_mtok"]),
    )
    return PriceEntry(
        label=label,
        model=entry.name("model", required=True) or "",
        rates=rates,
        provider=entry.provider("provider"),
        tenant=entry.text("tenant"),
        effective=entry.day("from"),
    )


def _discount(raw: Any, label: str, where: str) -> Discount:
    entry = _Entry(raw, label, where, _DISCOUNT_KEYS)
    percent = entry.amount("percent", Decimal(100))
    if percent is None:
        raise ConfigError(f"{entry.prefix}: percent is required")
    provider = entry.provider("provider")
    model = entry.name("model")
    if provider is None and model is None:
        raise ConfigError(f"{entry.prefix}: name a provider, a model or both")
    return Discount(
        label=label,
        percent=percent,
        model=model,
        provider=provider,
        tenant=entry.text("tenant"),
        effective=entry.day("from"),
    )


def _rate(amount: Decimal | None) -> Rate | None:
    return None if amount is None else Rate(amount)
