"""Spans as real instrumentations render one usage, normalized then priced.

Each profile writes the same true usage (uncached input, cache reads, cache
writes, visible output, reasoning) the way one instrumentation does; the
pipeline must price it the same whatever the semantics, so the cost never
falls when any true count grows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.cost import Pricer
from streams.normalize import normalize_genai

JUNE_2025_NS = 1_748_736_000 * 10**9
PRICER = Pricer()

Counts = tuple[int, int, int, int, int]  # uncached, read, write, visible, reasoning


@dataclass(frozen=True)
class Profile:
    render: Callable[[Counts], dict[str, Any]]
    scope: tuple[str, str] = ("", "")
    # counts this instrumentation can report (others stay 0)
    counts: tuple[bool, bool, bool, bool, bool] = (True, True, True, True, False)
    # fewest uncached input and visible output tokens it renders faithfully
    minimum: int = 0


def otel_anthropic(c: Counts) -> dict[str, Any]:
    """OpenLLMetry anthropic today: input includes the cache, total is the sum."""
    u, read, write, visible, _ = c
    return {
        "gen_ai.provider.name": "anthropic",
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "claude-sonnet-4-5",
        "gen_ai.usage.input_tokens": u + read + write,
        "gen_ai.usage.output_tokens": visible,
        "gen_ai.usage.total_tokens": u + read + write + visible,
        "gen_ai.usage.cache_read.input_tokens": read,
        "gen_ai.usage.cache_creation.input_tokens": write,
    }


def openinference_bedrock_invoke(c: Counts) -> dict[str, Any]:
    """Anthropic's own counts: prompt without the cache, no total."""
    u, read, write, visible, _ = c
    return {
        "openinference.span.kind": "LLM",
        "llm.provider": "aws",
        "llm.system": "anthropic",
        "llm.model_name": "us.anthropic.claude-3-5-haiku-20241022-v1:0",
        "llm.token_count.prompt": u,
        "llm.token_count.completion": visible,
        "llm.token_count.prompt_details.cache_read": read,
        "llm.token_count.prompt_details.cache_write": write,
    }


def bedrock_converse_unknown_scope(c: Counts) -> dict[str, Any]:
    """Bedrock's counts: inputTokens without the cache, totalTokens with it."""
    u, read, write, visible, _ = c
    return {
        **openinference_bedrock_invoke(c),
        "llm.token_count.total": u + read + write + visible,
    }


def gemini(c: Counts) -> dict[str, Any]:
    """Gemini's counts: output without thoughts, total with them."""
    u, read, _, visible, reasoning = c
    return {
        "gen_ai.provider.name": "gcp.gemini",
        "gen_ai.operation.name": "generate_content",
        "gen_ai.request.model": "gemini-2.5-flash",
        "gen_ai.usage.input_tokens": u + read,
        "gen_ai.usage.output_tokens": visible,
        "gen_ai.usage.reasoning.output_tokens": reasoning,
        "gen_ai.usage.total_tokens": u + read + visible + reasoning,
        "gen_ai.usage.cache_read.input_tokens": read,
    }


PROFILES = {
    "otel-inclusive": Profile(
        otel_anthropic, ("opentelemetry.instrumentation.anthropic", "0.62.4")
    ),
    # Its precedence slip writes the cache sum as the prompt when the uncached
    # count is 0 (the same value as when it equals the cache), and it leaves
    # out zero counts: only calls with some of each are rendered faithfully.
    "openinference-bedrock-invoke": Profile(
        openinference_bedrock_invoke,
        ("openinference.instrumentation.bedrock", "0.1.30"),
        minimum=1,
    ),
    "bedrock-converse-unknown-scope": Profile(bedrock_converse_unknown_scope),
    "gemini-thoughts-apart": Profile(
        gemini,
        ("opentelemetry.instrumentation.google_genai", "0.3b0"),
        counts=(True, True, False, True, True),
    ),
}  # fmt: skip

COUNTS = st.lists(st.integers(min_value=0, max_value=10**9), min_size=5, max_size=5)


def cost_of(profile: Profile, counts: list[int]) -> Decimal:
    u, read, write, visible, reasoning = (
        n if used else 0 for n, used in zip(counts, profile.counts, strict=True)
    )
    u, visible = max(u, profile.minimum), max(visible, profile.minimum)
    name, version = profile.scope
    genai = normalize_genai(
        profile.render((u, read, write, visible, reasoning)),
        scope_name=name,
        scope_version=version,
    )
    cost = PRICER.price(genai, JUNE_2025_NS, "default")
    assert cost is not None
    if not any((u, read, write, visible, reasoning)):
        # no count at all is no usage, not a free call; it counts as 0 here
        assert cost["status"] == "no_usage"
        return Decimal(0)
    assert cost["status"] == "priced", cost["match"]
    total = cost["total_cost"]
    assert isinstance(total, Decimal)
    return total


@pytest.mark.parametrize("name", list(PROFILES))
@given(
    counts=COUNTS,
    which=st.integers(min_value=0, max_value=4),
    extra=st.integers(min_value=1, max_value=10**6),
)
def test_cost_never_falls_when_a_true_count_grows(
    name: str, counts: list[int], which: int, extra: int
) -> None:
    profile = PROFILES[name]
    grown = list(counts)
    grown[which] += extra

    low = cost_of(profile, counts)
    high = cost_of(profile, grown)

    assert Decimal(0) <= low <= high


def test_cost_rises_with_uncached_input_across_the_cache_size() -> None:
    # The fault: 1499 uncached tokens next to 1500 read from the cache cost
    # more than 1500 uncached ones. claude-3-5-haiku on Bedrock: in 0.8,
    # cache read 0.08, out 4 per million; 30 output tokens.
    profile = PROFILES["openinference-bedrock-invoke"]

    below = cost_of(profile, [1499, 1500, 0, 30, 0])
    equal = cost_of(profile, [1500, 1500, 0, 30, 0])

    # 1499 x 0.8 + 1500 x 0.08 + 30 x 4 and 1500 x 0.8 + 1500 x 0.08 + 30 x 4
    assert below == Decimal("0.0014392")
    assert equal == Decimal("0.00144")


def test_openinference_bedrock_prompt_plus_cache_read_is_priced_in_full() -> None:
    # Prompt 3000 without the 2000 read from the cache, 100 output tokens, on
    # claude-3-5-sonnet-20240620 (regional Bedrock: in 3, cache read 0.3,
    # out 15): 3000 x 3 + 2000 x 0.3 + 100 x 15 per million.
    attributes = {
        **openinference_bedrock_invoke((3000, 2000, 0, 100, 0)),
        "llm.model_name": "claude-3-5-sonnet-20240620",
    }
    genai = normalize_genai(
        attributes,
        scope_name="openinference.instrumentation.bedrock",
        scope_version="0.1.30",
    )

    cost = PRICER.price(genai, JUNE_2025_NS, "default")

    assert cost is not None and cost["status"] == "priced"
    assert cost["total_cost"] == Decimal("0.0111")
