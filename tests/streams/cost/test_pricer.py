"""Pricing spans: a hand-computed table across providers, statuses, properties.

Every expected amount below was computed by hand from the genai-prices 0.2.3
catalog; the per-million-token prices used are written next to each case
(in = uncached input, cr = cache read, cw = cache write, out = output).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import genai_prices
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.cost import Pricer
from streams.cost.models import bedrock_id_of
from streams.normalize import normalize_genai

# 2025-06-01T00:00:00Z and 2026-06-01T00:00:00Z
JUNE_2025_NS = 1_748_736_000 * 10**9
JUNE_2026_NS = 1_780_272_000 * 10**9

PRICES_YAML = """
aliases:
  - {name: prod-chat, provider: azure.ai.openai, model: gpt-4o}
  - {name: fast, model: gpt-4o-mini, model_provider: openai}
prices:
  - model: llama-3.1-70b-internal
    provider: vllm
    currency: EUR
    input_mtok: 0.4
    output_mtok: 0.8
  - model: llama-3.1-70b-internal
    provider: vllm
    tenant: bigco
    currency: EUR
    input_mtok: 0.2
    output_mtok: 0.4
  - {model: ft-support-bot, provider: openai, from: 2025-01-01,
     input_mtok: 3, output_mtok: 12}
  - {model: ft-support-bot, provider: openai, from: 2026-01-01,
     input_mtok: 2, output_mtok: 8}
  - {model: my-llama, provider: vllm, input_mtok: 1, output_mtok: 2}
  - {model: my-llama, provider: vllm, tenant: acme, from: 2026-01-01,
     input_mtok: 0.5, output_mtok: 1}
discounts:
  - {provider: openai, model: gpt-4o, tenant: acme, percent: 15}
"""


@pytest.fixture(scope="module")
def pricer(tmp_path_factory: pytest.TempPathFactory) -> Pricer:
    path: Path = tmp_path_factory.mktemp("prices") / "prices.yaml"
    path.write_text(PRICES_YAML)
    return Pricer(path)


@dataclass
class Case:
    id: str
    provider: str | None
    model: str | None
    tokens: tuple[int | None, ...]  # input, output, cache read, cache write, reasoning
    status: str = "priced"
    total: str | None = None
    matched: str | None = None
    request_model: str | None = None
    operation: str = "chat"
    tenant: str = "default"
    at_ns: int = JUNE_2025_NS
    currency: str = "USD"
    parts: dict[str, str] = field(default_factory=dict)
    issues: tuple[str, ...] = ()


def t(
    inp: int | None,
    out: int | None,
    cr: int | None = None,
    cw: int | None = None,
    rs: int | None = None,
) -> tuple[int | None, ...]:
    return (inp, out, cr, cw, rs)


VERTEX_PATH = "projects/p/locations/us-central1/publishers/google/models/"
BEDROCK_ARN = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/"

CASES = [
    # --- OpenAI: gpt-4o in 2.5, cr 1.25, out 10 ---
    Case("openai dated response model", "openai", "gpt-4o-2024-08-06",
         t(1000, 500), total="0.0075", matched="gpt-4o", request_model="gpt-4o"),
    # 600 x 2.5 + 400 x 1.25 + 500 x 10, per million
    Case("openai cached tokens counted once", "openai", "gpt-4o",
         t(1000, 500, cr=400), total="0.007", matched="gpt-4o",
         parts={"input_cost": "0.0015", "cache_read_cost": "0.0005"}),
    # o1: in 15, out 60; reasoning 800 of the 1000 output tokens
    Case("openai reasoning is part of output", "openai", "o1-2024-12-17",
         t(100, 1000, rs=800), total="0.0615", matched="o1",
         parts={"output_cost": "0.012", "reasoning_cost": "0.048"}),
    # gpt-4o-2024-05-13 has its own entry: in 5, out 15 (not gpt-4o's 2.5/10)
    Case("openai dated snapshot with its own price", "openai", "gpt-4o-2024-05-13",
         t(1000, 1000), total="0.02", matched="gpt-4o-2024-05-13"),
    # gpt-4o-mini names the one snapshot it prices (2024-07-18): another
    # date may have another price
    Case("openai snapshot its family does not list is unknown", "openai",
         "gpt-4o-mini-2025-01-01", t(2000, 100), status="unknown_model"),
    Case("openai provider-prefixed model", "openai", "openai/gpt-4o",
         t(1000, 100), total="0.0035", matched="gpt-4o"),
    # provider taken from the prefix: gpt-4o-mini in 0.15, out 0.6
    Case("prefix names the provider", None, "openai/gpt-4o-mini",
         t(1_000_000, 1_000_000), total="0.75", matched="gpt-4o-mini"),
    # text-embedding-3-small: in 0.02; embeddings report no output tokens
    Case("openai embeddings", "openai", "text-embedding-3-small",
         t(5000, None), total="0.0001", operation="embeddings",
         matched="text-embedding-3-small"),
    # request gpt-4o, response gpt-4o-mini-2024-07-18: in 0.15, out 0.6
    Case("response model wins over request model", "openai",
         "gpt-4o-mini-2024-07-18", t(1000, 1000), total="0.00075",
         matched="gpt-4o-mini", request_model="gpt-4o"),
    # o3-mini in 1.1, cr 0.55, out 4.4: 5000x1.1 + 5000x0.55 + 500x4.4 + 1500x4.4
    Case("openai cache and reasoning together", "openai", "o3-mini-2025-01-31",
         t(10000, 2000, cr=5000, rs=1500), total="0.01705", matched="o3-mini"),
    # gpt-4o via the provider inferred from the name: in 2.5, out 10
    Case("no provider, inferred from the name", None, "gpt-4o",
         t(1000, 1000), total="0.0125", matched="gpt-4o"),
    # --- Azure OpenAI (falls back to OpenAI's prices) ---
    Case("azure deployment name, response names the model", "azure.ai.openai",
         "gpt-4o-2024-11-20", t(1000, 1000), total="0.0125", matched="gpt-4o",
         request_model="prod-chat"),
    # deployment called "gpt-4" actually serving gpt-4o-mini (0.15 / 0.6)
    Case("azure deployment named like another model", "azure.ai.openai",
         "gpt-4o-mini-2024-07-18", t(1000, 1000), total="0.00075",
         matched="gpt-4o-mini", request_model="gpt-4"),
    Case("azure deployment without alias is unknown", "azure.ai.openai", None,
         t(1000, 1000), status="unknown_model", request_model="support-bot"),
    # operator alias prod-chat -> gpt-4o: in 2.5, out 10
    Case("azure deployment alias", "azure.ai.openai", None, t(1000, 1000),
         total="0.0125", matched="gpt-4o", request_model="prod-chat"),
    # Azure spells gpt-35-turbo: in 0.5, out 1.5
    Case("azure gpt-35-turbo spelling", "azure.ai.openai", "gpt-35-turbo",
         t(1000, 1000), total="0.002", matched="gpt-3.5-turbo"),
    # Azure's own o3-mini entry: in 1.1, out 4.4
    Case("azure own entry", "azure.ai.openai", "o3-mini", t(1000, 1000),
         total="0.0055", matched="o3-mini"),
    # --- Anthropic: claude-3-5-sonnet in 3, cr 0.3, cw 3.75, out 15 ---
    # 500x3 + 1000x0.3 + 500x3.75 + 300x15
    Case("anthropic cache read and write", "anthropic",
         "claude-3-5-sonnet-20241022", t(2000, 300, cr=1000, cw=500),
         total="0.008175", matched="claude-3-5-sonnet",
         parts={"cache_write_cost": "0.001875"}),
    # claude-3-5-haiku: in 0.8, out 4
    Case("anthropic haiku latest", "anthropic", "claude-3-5-haiku-latest",
         t(10000, 1000), total="0.012", matched="claude-3-5-haiku-latest"),
    # claude-sonnet-4-5 below the 200k tier: in 3, out 15
    Case("anthropic below tier", "anthropic", "claude-sonnet-4-5",
         t(100_000, 1000), total="0.315", matched="claude-sonnet-4-5"),
    # above 200k input every token costs the tier price: in 6, out 22.5
    Case("anthropic above tier", "anthropic", "claude-sonnet-4-5-20250929",
         t(250_000, 1000), total="1.5225", matched="claude-sonnet-4-5"),
    # claude-sonnet-4-6 in 2025: tiered, 300k input -> in 6, out 22.5
    Case("anthropic historic tiered price", "anthropic", "claude-sonnet-4-6",
         t(300_000, 1000), total="1.8225", matched="claude-sonnet-4-6"),
    # from 2026-03-13 the same model is flat: in 3, out 15
    Case("anthropic current flat price", "anthropic", "claude-sonnet-4-6",
         t(300_000, 1000), total="0.915", matched="claude-sonnet-4-6",
         at_ns=JUNE_2026_NS),
    # claude-3-5-haiku: in 0.8, out 4
    Case("anthropic prefixed, no provider", None,
         "anthropic/claude-3-5-haiku-20241022", t(1000, 1000), total="0.0048",
         matched="claude-3-5-haiku-latest"),
    # gateway through the OpenAI SDK to an Anthropic model: in 3, out 15
    Case("openai sdk, anthropic model prefix", "openai",
         "anthropic/claude-3.5-sonnet", t(1000, 1000), total="0.018",
         matched="claude-3-5-sonnet"),
    # --- Anthropic via Bedrock (the aws catalog) ---
    # regional claude-3-5-sonnet-20240620: in 3, out 15
    Case("bedrock model id with version suffix", "aws.bedrock",
         "anthropic.claude-3-5-sonnet-20240620-v1:0", t(1000, 1000),
         total="0.018",
         matched="regional.anthropic.claude-3-5-sonnet-20240620-v1:0"),
    Case("bedrock cross-region prefix", "aws.bedrock",
         "us.anthropic.claude-3-5-sonnet-20241022-v2:0", t(1000, 1000),
         total="0.018",
         matched="regional.anthropic.claude-3-5-sonnet-20241022-v2:0"),
    # regional sonnet 4.5 costs 10% more: in 3.3, out 16.5
    Case("bedrock regional premium", "aws.bedrock",
         "us.anthropic.claude-sonnet-4-5-20250929-v1:0", t(1000, 1000),
         total="0.0198",
         matched="regional.anthropic.claude-sonnet-4-5-20250929-v1:0"),
    # global profile: in 3, out 15
    Case("bedrock global profile", "aws.bedrock",
         "global.anthropic.claude-sonnet-4-5-20250929-v1:0", t(1000, 1000),
         total="0.018",
         matched="global.anthropic.claude-sonnet-4-5-20250929-v1:0"),
    # Bedrock answers with the bare name; the request's global profile
    # decides: in 3, out 15 (not the regional 3.3 / 16.5)
    Case("bedrock response drops the global prefix", "aws.bedrock",
         "claude-sonnet-4-5-20250929", t(1000, 1000), total="0.018",
         matched="global.anthropic.claude-sonnet-4-5-20250929-v1:0",
         request_model="global.anthropic.claude-sonnet-4-5-20250929-v1:0"),
    # regional haiku 3.5: in 0.8, cr 0.08, out 4
    Case("bedrock inference profile ARN", "aws.bedrock",
         BEDROCK_ARN + "us.anthropic.claude-3-5-haiku-20241022-v1:0",
         t(1000, 1000, cr=500), total="0.00444",
         matched="regional.anthropic.claude-3-5-haiku-20241022-v1:0"),
    # amazon.nova-pro: in 0.8, out 3.2
    Case("bedrock amazon model", "aws.bedrock", "amazon.nova-pro-v1:0",
         t(1000, 1000), total="0.004", matched="amazon.nova-pro-v1:0"),
    # meta llama 3.1 70b on Bedrock: in 0.72, out 0.72
    Case("bedrock meta model", "aws.bedrock",
         "meta.llama3-1-70b-instruct-v1:0", t(1000, 1000), total="0.00144",
         matched="meta.llama3-1-70b-instruct-v1:0"),
    # --- Gemini / Vertex ---
    # gemini-1.5-pro below 128k: in 1.25, out 5
    Case("vertex resource path", "gcp.vertex_ai", VERTEX_PATH + "gemini-1.5-pro-002",
         t(1000, 1000), total="0.00625", matched="gemini-1.5-pro"),
    # above 128k: in 2.5, out 10
    Case("gemini long context tier", "gcp.vertex_ai", "gemini-1.5-pro-002",
         t(200_000, 1000), total="0.51", matched="gemini-1.5-pro"),
    # gemini-2.0-flash: in 0.1, cr 0.025, out 0.4
    Case("gemini api model name", "gcp.gemini", "models/gemini-2.0-flash-001",
         t(10000, 1000, cr=2000), total="0.00125", matched="gemini-2.0-flash"),
    # gemini-2.5-flash: in 0.3, out 2.5 (thinking tokens at the output price)
    Case("gemini thinking tokens", "gcp.gen_ai", "gemini-2.5-flash",
         t(1000, 2000, rs=1500), total="0.0053", matched="gemini-2.5-flash"),
    # Claude on Vertex falls back to Anthropic's prices: in 3, out 15
    Case("claude on vertex", "gcp.vertex_ai", "claude-3-5-sonnet-v2@20241022",
         t(1000, 1000), total="0.018", matched="claude-3-5-sonnet"),
    # --- Mistral ---
    # mistral-large: in 2, out 6
    Case("mistral dated entry", "mistral_ai", "mistral-large-2411",
         t(1000, 1000), total="0.008", matched="mistral-large"),
    # mistral-large lists -2407 and -2411 only; the same catalog prices
    # mistral-large-2402 at 4 / 12 on Bedrock, not the family's 2 / 6
    Case("mistral snapshot its family does not list is unknown", "mistral_ai",
         "mistral-large-2402", t(1000, 1000), status="unknown_model"),
    # ministral-3b lists no snapshot, so a dated name is the family:
    # in 0.04, out 0.04
    Case("mistral dated -> family listing no snapshot", "mistral_ai",
         "ministral-3b-2410", t(1000, 1000), total="0.00008",
         matched="ministral-3b"),
    # mistral-small-latest in 2025: in 0.1, out 0.3
    Case("mistral historic price", "mistral_ai", "mistral-small-latest",
         t(1000, 1000), total="0.0004", matched="mistral-small-latest"),
    # from 2026-03-16: in 0.15, out 0.6
    Case("mistral current price", "mistral_ai", "mistral-small-latest",
         t(1000, 1000), total="0.00075", matched="mistral-small-latest",
         at_ns=JUNE_2026_NS),
    # --- Perplexity: sonar in 1, out 1, and $12 per thousand requests ---
    # 1000 x 1 + 3164 x 1 per million, plus 12 / 1000 for the one request
    Case("per-request fee charged once", "perplexity", "sonar",
         t(1000, 3164), total="0.016164", matched="sonar",
         parts={"request_cost": "0.012", "output_cost": "0.003164"}),
    # --- self-hosted and operator prices ---
    Case("unknown self-hosted model is never zero", "vllm",
         "llama-3.1-70b-instruct", t(1000, 1000), status="unknown_model"),
    Case("self-hosted lookalike name is not priced", "ollama", "gpt-4o",
         t(1000, 1000), status="unknown_model"),
    Case("provider without catalog", "ibm.watsonx.ai", "granite-13b-chat",
         t(1000, 1000), status="unknown_model"),
    # operator price: in 0.4, out 0.8 EUR
    Case("operator price for a private model", "vllm", "llama-3.1-70b-internal",
         t(1000, 1000), total="0.0012", currency="EUR",
         matched="llama-3.1-70b-internal"),
    # the tenant's own price: in 0.2, out 0.4 EUR
    Case("per-tenant operator price", "vllm", "llama-3.1-70b-internal",
         t(1000, 1000), total="0.0006", currency="EUR", tenant="bigco",
         matched="llama-3.1-70b-internal"),
    # dated operator prices: 2025 in 3 out 12; 2026 in 2 out 8
    Case("operator price history 2025", "openai", "ft-support-bot",
         t(1000, 1000), total="0.015", matched="ft-support-bot"),
    Case("operator price history 2026", "openai", "ft-support-bot",
         t(1000, 1000), total="0.01", matched="ft-support-bot",
         at_ns=JUNE_2026_NS),
    # acme's own my-llama price starts 2026-01-01 (in 0.5, out 1); before
    # it acme pays everyone's (in 1, out 2)
    Case("tenant price not yet in force falls back to everyone's", "vllm",
         "my-llama", t(1000, 1000), total="0.003", tenant="acme",
         matched="my-llama"),
    Case("tenant price once in force", "vllm", "my-llama", t(1000, 1000),
         total="0.0015", tenant="acme", matched="my-llama", at_ns=JUNE_2026_NS),
    # gpt-4o (in 2.5, out 10) with acme's 15% discount: 0.0125 x 0.85
    Case("negotiated discount", "openai", "gpt-4o-2024-08-06", t(1000, 1000),
         total="0.010625", tenant="acme", matched="gpt-4o"),
    # operator alias "fast" -> openai gpt-4o-mini: in 0.15, out 0.6
    Case("gateway alias", "litellm", "fast", t(1000, 1000), total="0.00075",
         matched="gpt-4o-mini"),
    # --- statuses ---
    Case("streamed call without counts", "openai", "gpt-4o", t(None, None),
         status="no_usage"),
    Case("chat without output count", "openai", "gpt-4o", t(1000, None),
         status="no_usage"),
    Case("chat with zero input and zero output is not a free call", "openai",
         "gpt-4o", t(0, 0), status="no_usage"),
    Case("embedding of zero tokens", "openai", "text-embedding-3-small",
         t(0, None), status="no_usage", operation="embeddings"),
    Case("negative count rejected by the normalizer", "openai", "gpt-4o",
         t(None, 100), status="invalid_usage",
         issues=("invalid_tokens:input_tokens",)),
    Case("agent span repeating its children's usage", "openai", "gpt-4o",
         t(1000, 1000), status="not_llm_call", operation="invoke_agent"),
    Case("tool call", None, None, t(None, None), status="not_llm_call",
         operation="execute_tool"),
    Case("no model name", "openai", None, t(1000, 1000), status="unknown_model"),
    Case("cache larger than input", "openai", "gpt-4o", t(100, 10, cr=500),
         status="invalid_usage"),
]  # fmt: skip


def genai_of(case: Case) -> dict[str, Any]:
    inp, out, cr, cw, rs = case.tokens
    return {
        "operation": case.operation,
        "provider": case.provider,
        "request_model": case.request_model,
        "response_model": case.model,
        "input_tokens": inp,
        "output_tokens": out,
        "cache_read_tokens": cr,
        "cache_write_tokens": cw,
        "reasoning_tokens": rs,
        "issues": list(case.issues),
        "reported_cost": None,
    }


def test_the_table_is_broad() -> None:
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_price(pricer: Pricer, case: Case) -> None:
    cost = pricer.price(genai_of(case), case.at_ns, case.tenant)

    assert cost is not None
    assert cost["status"] == case.status, cost["match"]
    if case.status != "priced":
        assert cost["total_cost"] is None
        assert cost["currency"] is None
        assert cost["match"]
        return
    assert cost["total_cost"] == Decimal(case.total or "x"), cost["match"]
    assert cost["currency"] == case.currency
    assert cost["matched_model"] == case.matched
    parts = [
        cost[k]
        for k in (
            "input_cost",
            "cache_read_cost",
            "cache_write_cost",
            "output_cost",
            "reasoning_cost",
            "request_cost",
        )
    ]
    assert sum(parts) == cost["total_cost"]
    for name, amount in case.parts.items():
        assert cost[name] == Decimal(amount)
    assert all(p.as_tuple().exponent == -12 for p in [*parts, cost["total_cost"]])


CATALOG_CASES = [
    c
    for c in CASES
    if c.status == "priced"
    and c.tenant == "default"
    and c.provider not in ("vllm", "litellm")
    and c.model not in ("ft-support-bot",)
    and c.request_model != "prod-chat"
]


@pytest.mark.parametrize("case", CATALOG_CASES, ids=[c.id for c in CATALOG_CASES])
def test_totals_agree_with_genai_prices_own_calculation(
    pricer: Pricer, case: Case
) -> None:
    cost = pricer.price(genai_of(case), case.at_ns, case.tenant)
    assert cost is not None
    inp, out, cr, cw, _ = case.tokens
    usage = genai_prices.Usage(
        input_tokens=inp,
        output_tokens=out or 0,
        cache_read_tokens=cr or 0,
        cache_write_tokens=cw or 0,
    )
    model = case.model or ""
    if case.request_model and bedrock_id_of(case.request_model, model):
        model = case.request_model
    entry = pricer.resolve(case.provider, model, case.tenant).entry
    assert entry is not None
    provider = genai_prices.data_snapshot.get_snapshot().find_provider(
        None, entry.provider, None
    )
    when = genai_prices.types.datetime.fromtimestamp(
        case.at_ns / 1e9, genai_prices.types.UTC
    )
    theirs = entry.info.calc_price(usage, provider, genai_request_timestamp=when)
    assert cost["total_cost"] == theirs.total_price


def test_unknown_model_keeps_the_reported_cost_and_says_why(pricer: Pricer) -> None:
    genai = genai_of(Case("x", "vllm", "mystery-7b", t(10, 10)))
    genai["reported_cost"] = 0.0042

    cost = pricer.price(genai, JUNE_2025_NS, "default")

    assert cost is not None
    assert cost["status"] == "unknown_model"
    assert cost["total_cost"] is None
    assert cost["reported_cost"] == Decimal("0.0042")
    assert "mystery-7b" in cost["match"]


def test_reported_cost_is_kept_next_to_ours(pricer: Pricer) -> None:
    genai = genai_of(Case("x", "openai", "gpt-4o", t(1000, 1000)))
    genai["reported_cost"] = 0.0125

    cost = pricer.price(genai, JUNE_2025_NS, "default")

    assert cost is not None
    assert cost["total_cost"] == cost["reported_cost"] == Decimal("0.0125")


def test_no_genai_record_has_no_cost(pricer: Pricer) -> None:
    assert pricer.price(None, JUNE_2025_NS, "default") is None


def test_match_explains_the_entry(pricer: Pricer) -> None:
    def match(provider: str | None, model: str, tenant: str = "default") -> str:
        genai = genai_of(Case("x", provider, model, t(10, 10)))
        cost = pricer.price(genai, JUNE_2025_NS, tenant)
        assert cost is not None
        return str(cost["match"])

    assert match("openai", "gpt-4o-2024-08-06").startswith("exact gpt-4o-2024-08-06")
    assert "dated -> family ministral-3b" in match("mistral_ai", "ministral-3b-2410")
    assert "mistral-large lists its dated versions (mistral-large-2407," in match(
        "mistral_ai", "mistral-large-2402"
    )
    assert "stripped prefix openai/" in match("openai", "openai/gpt-4o")
    assert "stripped resource path" in match(
        "gcp.vertex_ai", VERTEX_PATH + "gemini-1.5-pro"
    )
    assert "azure falls back to openai" in match("azure.ai.openai", "gpt-4o")
    assert "alias prod-chat -> gpt-4o" in match("azure.ai.openai", "prod-chat")
    assert "15% off" in match("openai", "gpt-4o", tenant="acme")
    assert "operator price" in match("vllm", "llama-3.1-70b-internal")


def test_anthropic_cache_exclusive_input_is_corrected_once(pricer: Pricer) -> None:
    # Anthropic's API semantics copied verbatim: input 500 excludes the 1000
    # read and 500 written. The normalizer adds them once; pricing must not.
    genai = normalize_genai(
        {
            "gen_ai.provider.name": "anthropic",
            "gen_ai.operation.name": "chat",
            "gen_ai.response.model": "claude-3-5-sonnet-20241022",
            "gen_ai.usage.input_tokens": 500,
            "gen_ai.usage.cache_read.input_tokens": 1000,
            "gen_ai.usage.cache_creation.input_tokens": 500,
            "gen_ai.usage.output_tokens": 300,
        }
    )
    assert genai is not None
    assert "input_tokens_excluded_cache" in genai["issues"]

    cost = pricer.price(genai, JUNE_2025_NS, "default")

    # same call as "anthropic cache read and write": 500x3 + 1000x0.3
    # + 500x3.75 + 300x15 per million
    assert cost is not None
    assert cost["total_cost"] == Decimal("0.008175")


def test_negative_tokens_from_attributes_are_flagged(pricer: Pricer) -> None:
    genai = normalize_genai(
        {
            "gen_ai.provider.name": "openai",
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": -5,
            "gen_ai.usage.output_tokens": "lots",
        }
    )

    cost = pricer.price(genai, JUNE_2025_NS, "default")

    assert cost is not None
    assert cost["status"] == "invalid_usage"
    assert "invalid_tokens:input_tokens" in cost["match"]


COUNTS = st.integers(min_value=0, max_value=10**12)
MODELS = st.sampled_from(
    [
        ("openai", "gpt-4o"),
        ("openai", "o3-mini"),
        ("anthropic", "claude-sonnet-4-5"),
        ("gcp.vertex_ai", "gemini-1.5-pro"),
        ("aws.bedrock", "us.anthropic.claude-3-5-haiku-20241022-v1:0"),
        ("mistral_ai", "mistral-large"),
    ]
)


def usage_of(
    uncached: int, cache_read: int, cache_write: int, visible: int, reasoning: int
) -> tuple[int, int, int, int, int]:
    inp = uncached + cache_read + cache_write
    return (inp, visible + reasoning, cache_read, cache_write, reasoning)


@given(MODELS, COUNTS, COUNTS, COUNTS, COUNTS, COUNTS)
def test_cost_is_never_negative(
    model: tuple[str, str], a: int, b: int, c: int, d: int, e: int
) -> None:
    genai = genai_of(Case("p", model[0], model[1], usage_of(a, b, c, d, e)))

    cost = PLAIN.price(genai, JUNE_2025_NS, "default")

    assert cost is not None
    if not any((a, b, c, d, e)):
        assert cost["status"] == "no_usage"
        return
    assert cost["status"] == "priced"
    assert cost["total_cost"] >= 0
    assert all(
        cost[k] >= 0
        for k in ("input_cost", "cache_read_cost", "cache_write_cost", "output_cost")
    )


@given(
    MODELS,
    st.lists(COUNTS, min_size=5, max_size=5),
    st.integers(min_value=0, max_value=4),
    st.integers(min_value=1, max_value=10**9),
)
def test_cost_never_decreases_when_tokens_grow(
    model: tuple[str, str], counts: list[int], which: int, extra: int
) -> None:
    grown = list(counts)
    grown[which] += extra
    before = genai_of(Case("p", model[0], model[1], usage_of(*counts)))
    after = genai_of(Case("p", model[0], model[1], usage_of(*grown)))

    low = PLAIN.price(before, JUNE_2025_NS, "default")
    high = PLAIN.price(after, JUNE_2025_NS, "default")

    assert low is not None and high is not None
    assert high["status"] == "priced"
    assert high["total_cost"] >= (low["total_cost"] or 0)


PLAIN = Pricer()


def test_match_names_the_prices_no_count_reaches(pricer: Pricer) -> None:
    # claude-3-5-sonnet also prices 1-hour cache writes and web searches,
    # which spans carry no count of: the tokens are priced, those are not.
    genai = genai_of(Case("x", "anthropic", "claude-3-5-sonnet", t(10, 10)))

    cost = pricer.price(genai, JUNE_2025_NS, "default")

    assert cost is not None and cost["status"] == "priced"
    assert "not charged: cache write 1h, web searches" in cost["match"]
    assert cost["request_cost"] == 0


def test_a_discount_scales_the_request_fee(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text("discounts:\n  - {provider: perplexity, percent: 50}\n")
    genai = genai_of(Case("x", "perplexity", "sonar", t(1000, 1000)))

    cost = Pricer(path).price(genai, JUNE_2025_NS, "default")

    # (1000 x 1 + 1000 x 1 per million + 12 / 1000) x 0.5
    assert cost is not None
    assert (cost["request_cost"], cost["total_cost"]) == (
        Decimal("0.006"),
        Decimal("0.007"),
    )


def test_a_name_taken_by_a_pattern_is_not_called_exact(pricer: Pricer) -> None:
    # The catalog prices gemini-1.5-flash-8b only as gemini-flash-1.5-8b
    # (in 0.0375); gemini-1.5-flash's pattern "contains gemini-1.5-flash"
    # takes the name and prices it at 0.075: the match must say so.
    genai = genai_of(Case("x", "gcp.gemini", "gemini-1.5-flash-8b", t(10, 10)))

    cost = pricer.price(genai, JUNE_2025_NS, "default")

    assert cost is not None
    assert not cost["match"].startswith("exact")
    assert cost["match"].startswith(
        "gemini-1.5-flash-8b; taken by gemini-1.5-flash's pattern"
        " (contains gemini-1.5-flash)"
    )


def test_a_listed_name_is_exact(pricer: Pricer) -> None:
    genai = genai_of(Case("x", "openai", "gpt-4o-2024-11-20", t(10, 10)))

    cost = pricer.price(genai, JUNE_2025_NS, "default")

    assert cost is not None
    assert cost["match"].startswith("exact gpt-4o-2024-11-20;")
