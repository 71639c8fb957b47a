"""Attribute names and value spellings of the GenAI conventions seen in the field.

Pure data, read once at import by ``streams.normalize``. Every table lists the
conventions newest first: OpenTelemetry GenAI (current names), deprecated
OpenTelemetry GenAI names, OpenLLMetry/Traceloop, OpenInference, OpenLIT.
Where two conventions share an attribute name, it is listed under the first
(newest) one that defines it.
"""

from __future__ import annotations

OTEL = "otel_genai"
OTEL_DEPRECATED = "otel_genai_deprecated"
OPENLLMETRY = "openllmetry"
OPENINFERENCE = "openinference"
OPENLIT = "openlit"

CONVENTION_ORDER: tuple[str, ...] = (
    OTEL,
    OTEL_DEPRECATED,
    OPENLLMETRY,
    OPENINFERENCE,
    OPENLIT,
)

# Keys of the GenAI record in schemas/span_batch.v1.avsc, in schema order.
GENAI_FIELDS: tuple[str, ...] = (
    "operation",
    "provider",
    "request_model",
    "response_model",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "total_tokens",
    "finish_reasons",
    "time_to_first_token_s",
    "conversation_id",
    "streaming",
    "error_type",
    "reported_cost",
    "conventions",
    "source_attributes",
    "issues",
)

TOKEN_FIELDS: tuple[str, ...] = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "total_tokens",
)

# Normalized field -> attributes it is read from, in precedence order. The
# first attribute holding a usable value wins.
FIELD_SOURCES: dict[str, tuple[tuple[str, str], ...]] = {
    "operation": (
        ("gen_ai.operation.name", OTEL),
        ("llm.request.type", OPENLLMETRY),
        ("traceloop.span.kind", OPENLLMETRY),
        ("openinference.span.kind", OPENINFERENCE),
    ),
    "provider": (
        ("gen_ai.provider.name", OTEL),
        ("gen_ai.system", OTEL_DEPRECATED),
        ("llm.vendor", OPENLLMETRY),
        # llm.provider names the host (azure), llm.system the API family
        # (openai): the host decides the price, so it comes first.
        ("llm.provider", OPENINFERENCE),
        ("llm.system", OPENINFERENCE),
    ),
    "request_model": (
        ("gen_ai.request.model", OTEL),
        ("llm.request.model", OPENLLMETRY),
        ("llm.model_name", OPENINFERENCE),
        ("embedding.model_name", OPENINFERENCE),
    ),
    "response_model": (
        ("gen_ai.response.model", OTEL),
        ("llm.response.model", OPENLLMETRY),
    ),
    "input_tokens": (
        ("gen_ai.usage.input_tokens", OTEL),
        ("gen_ai.usage.prompt_tokens", OTEL_DEPRECATED),
        ("llm.usage.prompt_tokens", OPENLLMETRY),
        ("llm.token_count.prompt", OPENINFERENCE),
    ),
    "output_tokens": (
        ("gen_ai.usage.output_tokens", OTEL),
        ("gen_ai.usage.completion_tokens", OTEL_DEPRECATED),
        ("llm.usage.completion_tokens", OPENLLMETRY),
        ("llm.token_count.completion", OPENINFERENCE),
    ),
    "cache_read_tokens": (
        ("gen_ai.usage.cache_read.input_tokens", OTEL),
        ("gen_ai.usage.cache_read_input_tokens", OPENLLMETRY),
        ("llm.token_count.prompt_details.cache_read", OPENINFERENCE),
    ),
    "cache_write_tokens": (
        ("gen_ai.usage.cache_write.input_tokens", OTEL),
        ("gen_ai.usage.cache_creation.input_tokens", OTEL),
        ("gen_ai.usage.cache_creation_input_tokens", OPENLLMETRY),
        ("llm.token_count.prompt_details.cache_write", OPENINFERENCE),
    ),
    "reasoning_tokens": (
        ("gen_ai.usage.reasoning.output_tokens", OTEL),
        ("gen_ai.usage.reasoning_tokens", OPENLLMETRY),
        ("llm.usage.reasoning_tokens", OPENLLMETRY),
        ("llm.token_count.completion_details.reasoning", OPENINFERENCE),
    ),
    "total_tokens": (
        ("gen_ai.usage.total_tokens", OPENLLMETRY),
        ("llm.usage.total_tokens", OPENLLMETRY),
        ("llm.token_count.total", OPENINFERENCE),
    ),
    "finish_reasons": (
        ("gen_ai.response.finish_reasons", OTEL),
        ("gen_ai.response.finish_reason", OPENLLMETRY),
        ("llm.response.finish_reason", OPENLLMETRY),
        ("llm.response.stop_reason", OPENLLMETRY),
    ),
    "time_to_first_token_s": (
        ("gen_ai.response.time_to_first_chunk", OTEL),
        ("gen_ai.server.ttft", OPENLIT),
    ),
    "conversation_id": (
        ("gen_ai.conversation.id", OTEL),
        ("traceloop.association.properties.conversation_id", OPENLLMETRY),
        ("traceloop.association.properties.session_id", OPENLLMETRY),
        ("traceloop.association.properties.thread_id", OPENLLMETRY),
        ("session.id", OPENINFERENCE),
    ),
    "streaming": (
        ("gen_ai.request.stream", OTEL),
        ("gen_ai.is_streaming", OPENLLMETRY),
        ("llm.is_streaming", OPENLLMETRY),
        ("llm.invocation_parameters", OPENINFERENCE),
        ("gen_ai.request.is_stream", OPENLIT),
    ),
    "error_type": (("error.type", OTEL),),
    "reported_cost": (
        ("llm.cost.total", OPENINFERENCE),
        ("gen_ai.usage.cost", OPENLIT),
    ),
}

# Attributes that are read but are not GenAI-specific: their presence alone
# does not make a span a GenAI span nor name a convention.
GENERIC_ATTRIBUTES: frozenset[str] = frozenset({"error.type", "session.id"})

# Attributes that only identify a convention (no normalized field of theirs).
MARKER_ATTRIBUTES: dict[str, str] = {
    "gen_ai.server.tbt": OPENLIT,
    "gen_ai.environment": OPENLIT,
    "gen_ai.application_name": OPENLIT,
    "gen_ai.prompt": OPENLIT,
    "gen_ai.completion": OPENLIT,
    "gen_ai.content.prompt": OPENLIT,
    "gen_ai.content.completion": OPENLIT,
}

# Attribute name -> convention, for every GenAI-specific name listed above.
KEY_CONVENTION: dict[str, str] = {
    **{
        name: convention
        for sources in FIELD_SOURCES.values()
        for name, convention in sources
        if name not in GENERIC_ATTRIBUTES
    },
    **MARKER_ATTRIBUTES,
}

# A span holding any attribute under these prefixes is a GenAI span.
GENAI_PREFIXES: tuple[str, ...] = ("gen_ai.", "llm.", "traceloop.", "openinference.")

# Prefix -> convention for names not listed exactly, most specific first; a
# name matching none of them is GenAI but of no identifiable convention.
PREFIX_CONVENTIONS: tuple[tuple[str, str], ...] = (
    ("gen_ai.prompt.", OPENLLMETRY),
    ("gen_ai.completion.", OPENLLMETRY),
    ("llm.prompts.", OPENLLMETRY),
    ("llm.completions.", OPENLLMETRY),
    ("traceloop.", OPENLLMETRY),
    ("llm.input_messages.", OPENINFERENCE),
    ("llm.output_messages.", OPENINFERENCE),
    ("llm.tools.", OPENINFERENCE),
    ("llm.prompt_template.", OPENINFERENCE),
    ("llm.token_count.", OPENINFERENCE),
    ("llm.cost.", OPENINFERENCE),
    ("openinference.", OPENINFERENCE),
    ("gen_ai.", OTEL),
)

# Instrumentations whose input count leaves out cache reads and writes: they
# copy the provider's own figure (Anthropic's input_tokens, Bedrock's
# inputTokens) where the OTel semantics want the sum. Each row is
# (instrumentation scope name, first affected version, first fixed version),
# None meaning unbounded; a scope whose version cannot be read matches only
# an unbounded row.
CACHE_EXCLUSIVE_SCOPES: tuple[tuple[str, str | None, str | None], ...] = (
    # InvokeModel copies Anthropic's input_tokens (a precedence slip drops the
    # cache sum whenever it is non-zero), Converse copies Bedrock's
    # inputTokens; both add the cache counts as prompt_details. The streamed
    # path includes the cache but sends no cache details, so it is never
    # corrected.
    ("openinference.instrumentation.bedrock", None, None),
)

# Providers whose APIs report reasoning ("thoughts") apart from output: when
# a reported total could mean either that or excluded cache, it means this.
REASONING_APART_PROVIDERS: frozenset[str] = frozenset(
    {"gcp.gemini", "gcp.vertex_ai", "gcp.gen_ai"}
)

WELL_KNOWN_PROVIDERS: frozenset[str] = frozenset(
    {
        "openai",
        "anthropic",
        "aws.bedrock",
        "azure.ai.openai",
        "azure.ai.inference",
        "gcp.gemini",
        "gcp.vertex_ai",
        "gcp.gen_ai",
        "cohere",
        "deepseek",
        "groq",
        "ibm.watsonx.ai",
        "mistral_ai",
        "perplexity",
        "x_ai",
    }
)

# Provider spellings with case and the separators ". _ - space" removed ->
# OpenTelemetry well-known value.
PROVIDER_ALIASES: dict[str, str] = {
    **{name.replace(".", "").replace("_", ""): name for name in WELL_KNOWN_PROVIDERS},
    "azaiopenai": "azure.ai.openai",
    "azure": "azure.ai.openai",
    "azureopenai": "azure.ai.openai",
    "azaiinference": "azure.ai.inference",
    "azureaiinference": "azure.ai.inference",
    "azureinference": "azure.ai.inference",
    "bedrock": "aws.bedrock",
    "awsbedrock": "aws.bedrock",
    "amazonbedrock": "aws.bedrock",
    "aws": "aws.bedrock",
    "vertexai": "gcp.vertex_ai",
    "vertex": "gcp.vertex_ai",
    "googlevertexai": "gcp.vertex_ai",
    "gemini": "gcp.gemini",
    "googlegemini": "gcp.gemini",
    "googleaistudio": "gcp.gemini",
    "google": "gcp.gen_ai",
    "googlegenai": "gcp.gen_ai",
    "mistral": "mistral_ai",
    "mistralai": "mistral_ai",
    "xai": "x_ai",
    "watsonx": "ibm.watsonx.ai",
    "watsonxai": "ibm.watsonx.ai",
    "ibmwatsonx": "ibm.watsonx.ai",
    "ibm": "ibm.watsonx.ai",
    "cohereai": "cohere",
    "perplexityai": "perplexity",
}

OPERATIONS: frozenset[str] = frozenset(
    {
        "chat",
        "generate_content",
        "text_completion",
        "embeddings",
        "retrieval",
        "execute_tool",
        "create_agent",
        "invoke_agent",
        "invoke_workflow",
        "rerank",
    }
)

# Lowercased operation spelling of any convention -> canonical operation.
OPERATION_ALIASES: dict[str, str] = {
    **{name: name for name in OPERATIONS},
    # OpenLLMetry llm.request.type, OpenLIT gen_ai.operation.name
    "completion": "text_completion",
    "embedding": "embeddings",
    # OpenInference openinference.span.kind
    "llm": "chat",
    "tool": "execute_tool",
    "retriever": "retrieval",
    "agent": "invoke_agent",
    "chain": "invoke_workflow",
    "reranker": "rerank",
    # Traceloop traceloop.span.kind
    "workflow": "invoke_workflow",
}

# Operation values that say "not known": treated as absent.
UNSET_OPERATIONS: frozenset[str] = frozenset({"unknown"})

TRUE_STRINGS: frozenset[str] = frozenset({"true", "1", "yes", "y", "t"})
FALSE_STRINGS: frozenset[str] = frozenset({"false", "0", "no", "n", "f"})
