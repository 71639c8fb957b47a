"""Per-token prices of one model and the exact cost of one call's usage.

Money is ``Decimal`` throughout: prices are per million tokens as the catalog
writes them, divided exactly by 10**6, multiplied by integer counts, and
quantized to ``COST_SCALE`` decimal places (the scale of the Avro decimal and
of the NUMERIC columns), half-even. Components are disjoint, so their sum is
the total:

- input: input tokens that were neither read from nor written to the cache;
- cache read / cache write: those tokens at their own price (the input price
  where the entry has none, as the catalog itself does);
- output: output tokens that were not reasoning;
- reasoning: reasoning tokens at the reasoning price, else the output price;
- request: the entry's fee per request, once per call.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import ROUND_HALF_EVEN, Context, Decimal

COST_SCALE = 12
QUANTUM = Decimal(1).scaleb(-COST_SCALE)
# Wide enough that no product of a count below 2**63 and a price is rounded
# before the final quantization.
MONEY = Context(prec=60, rounding=ROUND_HALF_EVEN)
ZERO = Decimal(0)


@dataclass(frozen=True)
class Rate:
    """A price per million tokens, with optional input-size tiers."""

    base_mtok: Decimal
    # (input tokens above which the price applies, price), ascending
    tiers: tuple[tuple[int, Decimal], ...] = ()

    def per_token(self, input_tokens: int) -> Decimal:
        """The price of one token for a call of ``input_tokens`` input tokens.

        Tiers are cliffs, as providers bill them: crossing a tier's start
        prices every token of the call at the tier's rate.
        """
        price = self.base_mtok
        for start, tier_price in reversed(self.tiers):
            if input_tokens > start:
                price = tier_price
                break
        return price.scaleb(-6, MONEY)

    def scaled(self, factor: Decimal) -> Rate:
        return Rate(
            MONEY.multiply(self.base_mtok, factor),
            tuple((s, MONEY.multiply(p, factor)) for s, p in self.tiers),
        )


@dataclass(frozen=True)
class Rates:
    """Everything needed to price a call of one model."""

    currency: str
    input: Rate | None
    output: Rate | None
    cache_read: Rate | None = None
    cache_write: Rate | None = None
    reasoning: Rate | None = None
    request: Decimal | None = None  # fee per request, in currency

    def discounted(self, factor: Decimal) -> Rates:
        """These rates multiplied by ``factor`` (0.85 for 15% off)."""
        return replace(
            self,
            input=_scaled(self.input, factor),
            output=_scaled(self.output, factor),
            cache_read=_scaled(self.cache_read, factor),
            cache_write=_scaled(self.cache_write, factor),
            reasoning=_scaled(self.reasoning, factor),
            request=None
            if self.request is None
            else MONEY.multiply(self.request, factor),
        )


@dataclass(frozen=True)
class Usage:
    """Token counts with the OTel semantics: input includes cache, output
    includes reasoning."""

    input_tokens: int
    output_tokens: int
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass(frozen=True)
class Amounts:
    input: Decimal
    cache_read: Decimal
    cache_write: Decimal
    output: Decimal
    reasoning: Decimal
    request: Decimal
    total: Decimal


class MissingRate(Exception):
    """The entry has no price for tokens the call used (named in args[0])."""


def compute(rates: Rates, usage: Usage) -> Amounts:
    """The cost of ``usage`` at ``rates``; raises MissingRate for unpriced use."""
    threshold = usage.input_tokens
    uncached = usage.input_tokens - usage.cache_read_tokens - usage.cache_write_tokens
    visible_output = usage.output_tokens - usage.reasoning_tokens

    input_rate = _needed(rates.input, usage.input_tokens, "input")
    output_rate = _needed(rates.output, usage.output_tokens, "output")
    cache_read_rate = rates.cache_read or input_rate
    cache_write_rate = rates.cache_write or input_rate
    reasoning_rate = rates.reasoning or output_rate

    input_cost = _cost(input_rate, uncached, threshold)
    cache_read = _cost(cache_read_rate, usage.cache_read_tokens, threshold)
    cache_write = _cost(cache_write_rate, usage.cache_write_tokens, threshold)
    output = _cost(output_rate, visible_output, threshold)
    reasoning = _cost(reasoning_rate, usage.reasoning_tokens, threshold)
    request = quantize(rates.request if rates.request is not None else ZERO)
    total = ZERO
    for amount in (input_cost, cache_read, cache_write, output, reasoning, request):
        total = MONEY.add(total, amount)
    return Amounts(
        input_cost, cache_read, cache_write, output, reasoning, request, total
    )


def quantize(value: Decimal) -> Decimal:
    return value.quantize(QUANTUM, context=MONEY)


def _needed(rate: Rate | None, tokens: int, kind: str) -> Rate | None:
    if rate is None and tokens > 0:
        raise MissingRate(kind)
    return rate


def _cost(rate: Rate | None, tokens: int, threshold: int) -> Decimal:
    if rate is None or tokens == 0:
        return ZERO.quantize(QUANTUM)
    return quantize(MONEY.multiply(rate.per_token(threshold), Decimal(tokens)))


def _scaled(rate: Rate | None, factor: Decimal) -> Rate | None:
    return None if rate is None else rate.scaled(factor)
