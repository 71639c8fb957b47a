"""GenAI normalization: every convention and quirk, and Avro validity of the output.

Attribute sets are modelled on what the installed instrumentations emit:
opentelemetry-instrumentation-openai-v2 (both its patch path with
``gen_ai.system`` and the util-genai handler path with
``gen_ai.provider.name``), OpenLLMetry's opentelemetry-instrumentation-anthropic
and its older generations, openinference-instrumentation-openai, and OpenLIT.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import schemas
from streams import normalize
from streams.conventions import FIELD_SOURCES, GENAI_FIELDS, KEY_CONVENTION
from streams.normalize import normalize_genai

SCHEMA_PATH = Path(schemas.__file__).parent / "span_batch.v1.avsc"


def genai(attributes: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    result = normalize_genai(attributes, **kwargs)
    if result is None:
        pytest.fail("expected a GenAI record, got None")
    return result


def span_batch(genai_record: dict[str, Any] | None) -> dict[str, Any]:
    """The smallest SpanBatch holding one span with the given GenAI record."""
    return {
        "tenant": "default",
        "trace_id": "0af7651916cd43dd8448eb211c80319c",
        "received_unix_nano": 1_700_000_000_000_000_000,
        "source": "otlp_spans[0] 42",
        "resources": [
            {
                "resource_proto": b"",
                "resource_schema_url": "",
                "scope_proto": b"",
                "scope_schema_url": "",
                "service_name": "svc",
                "resource_attributes_json": "{}",
            }
        ],
        "spans": [
            {
                "resource_index": 0,
                "span_proto": b"\x0a\x10",
                "span_id": "b7ad6b7169203331",
                "parent_span_id": None,
                "name": "chat gpt-4o",
                "kind": "SPAN_KIND_CLIENT",
                "start_unix_nano": 1,
                "end_unix_nano": 2,
                "status_code": "OK",
                "status_message": "",
                "attributes_json": "{}",
                "events_json": "[]",
                "links_count": 0,
                "genai": genai_record,
            }
        ],
    }


def assert_round_trips(record: dict[str, Any] | None) -> None:
    codec = schemas.codec("span_batch")
    batch = span_batch(record)
    decoded = codec.decode(codec.encode(batch))
    assert decoded["spans"][0]["genai"] == record


# --- conventions -----------------------------------------------------------

OTEL_CURRENT_OPENAI = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.request.temperature": 0.2,
    "gen_ai.request.stream": True,
    "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
    "gen_ai.response.id": "chatcmpl-9xYz",
    "gen_ai.response.finish_reasons": ["stop"],
    "gen_ai.usage.input_tokens": 1200,
    "gen_ai.usage.output_tokens": 85,
    "gen_ai.usage.cache_read.input_tokens": 1024,
    "gen_ai.usage.reasoning.output_tokens": 0,
    "gen_ai.response.time_to_first_chunk": 0.42,
    "gen_ai.conversation.id": "conv_01",
    "server.address": "api.openai.com",
    "server.port": 443,
}

OTEL_OPENAI_V2_PATCH = {
    "gen_ai.operation.name": "chat",
    "gen_ai.system": "openai",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.response.model": "gpt-4o-2024-08-06",
    "gen_ai.response.id": "chatcmpl-abc",
    "gen_ai.response.finish_reasons": ["stop", "length"],
    "gen_ai.openai.response.service_tier": "default",
    "gen_ai.usage.input_tokens": 20,
    "gen_ai.usage.output_tokens": 7,
    "server.address": "api.openai.com",
}

OTEL_DEPRECATED_TOKENS = {
    "gen_ai.operation.name": "text_completion",
    "gen_ai.system": "openai",
    "gen_ai.request.model": "gpt-3.5-turbo-instruct",
    "gen_ai.usage.prompt_tokens": 9,
    "gen_ai.usage.completion_tokens": 16,
}

OPENLLMETRY_CURRENT_ANTHROPIC = {
    "gen_ai.provider.name": "anthropic",
    "gen_ai.operation.name": "chat",
    "gen_ai.request.model": "claude-sonnet-4-5",
    "gen_ai.request.max_tokens": 1024,
    "gen_ai.is_streaming": False,
    "gen_ai.response.model": "claude-sonnet-4-5-20250929",
    "gen_ai.response.id": "msg_01",
    "gen_ai.response.finish_reasons": ["stop"],
    # input = Anthropic input_tokens (100) + cache read + cache creation
    "gen_ai.usage.input_tokens": 2100,
    "gen_ai.usage.output_tokens": 300,
    "gen_ai.usage.total_tokens": 2400,
    "gen_ai.usage.cache_read.input_tokens": 2000,
    "gen_ai.usage.cache_creation.input_tokens": 0,
}

OPENLLMETRY_MIDDLE_OPENAI = {
    "gen_ai.system": "OpenAI",
    "llm.request.type": "chat",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.response.model": "gpt-4o-2024-08-06",
    "gen_ai.openai.api_base": "https://api.openai.com/v1/",
    "llm.headers": "None",
    "llm.is_streaming": True,
    "gen_ai.prompt.0.role": "user",
    "gen_ai.prompt.0.content": "hello",
    "gen_ai.completion.0.role": "assistant",
    "gen_ai.completion.0.finish_reason": "stop",
    "gen_ai.usage.prompt_tokens": 50,
    "gen_ai.usage.completion_tokens": 12,
    "llm.usage.total_tokens": 62,
    "gen_ai.usage.reasoning_tokens": 0,
    "traceloop.association.properties.session_id": "sess-9",
    "traceloop.workflow.name": "support_bot",
}

OPENLLMETRY_MIDDLE_ANTHROPIC_UNCACHED_INPUT = {
    "gen_ai.system": "Anthropic",
    "llm.request.type": "chat",
    "gen_ai.request.model": "claude-3-5-sonnet-20241022",
    "gen_ai.response.model": "claude-3-5-sonnet-20241022",
    "gen_ai.usage.prompt_tokens": 12,
    "gen_ai.usage.completion_tokens": 30,
    "llm.usage.total_tokens": 42,
    "gen_ai.usage.cache_read_input_tokens": 1500,
    "gen_ai.usage.cache_creation_input_tokens": 0,
}

OPENLLMETRY_EARLIEST = {
    "llm.vendor": "OpenAI",
    "llm.request.type": "completion",
    "llm.request.model": "text-davinci-003",
    "llm.response.model": "text-davinci-003",
    "llm.prompts.0.user": "Tell me a joke",
    "llm.completions.0.content": "...",
    "llm.usage.prompt_tokens": 5,
    "llm.usage.completion_tokens": 16,
    "llm.usage.total_tokens": 21,
}

OPENINFERENCE_OPENAI = {
    "openinference.span.kind": "LLM",
    "llm.system": "openai",
    "llm.provider": "openai",
    "llm.model_name": "gpt-4o-mini-2024-07-18",
    "llm.invocation_parameters": json.dumps(
        {"model": "gpt-4o-mini", "stream": True, "stream_options": {"x": 1}}
    ),
    "input.mime_type": "application/json",
    "llm.input_messages.0.message.role": "user",
    "llm.output_messages.0.message.role": "assistant",
    "llm.token_count.prompt": 1200,
    "llm.token_count.completion": 40,
    "llm.token_count.total": 1240,
    "llm.token_count.prompt_details.cache_read": 1024,
    "llm.token_count.completion_details.reasoning": 0,
    "session.id": "sess-42",
    "llm.cost.total": 0.00021,
}

OPENINFERENCE_AZURE_EMBEDDING = {
    "openinference.span.kind": "EMBEDDING",
    "llm.system": "openai",
    "llm.provider": "azure",
    "embedding.model_name": "text-embedding-3-small",
    "llm.invocation_parameters": '{"model": "text-embedding-3-small"}',
    "llm.token_count.prompt": 8,
    "llm.token_count.total": 8,
}

OPENLIT_OPENAI = {
    "telemetry.sdk.name": "openlit",
    "gen_ai.operation.name": "chat",
    "gen_ai.system": "openai",
    "gen_ai.environment": "default",
    "gen_ai.application_name": "default",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.request.is_stream": False,
    "gen_ai.request.seed": "",
    "gen_ai.request.max_tokens": -1,
    "gen_ai.response.finish_reasons": ["stop"],
    "gen_ai.usage.input_tokens": 14,
    "gen_ai.usage.output_tokens": 100,
    "gen_ai.usage.total_tokens": 114,
    "gen_ai.usage.cost": 0.00104,
    "gen_ai.server.ttft": 0.35,
    "gen_ai.server.tbt": 0.01,
    "server.address": "api.openai.com",
}

OPENLIT_AZURE_EMBEDDING = {
    "gen_ai.operation.name": "embedding",
    "gen_ai.system": "az.ai.openai",
    "gen_ai.request.model": "text-embedding-ada-002",
    "gen_ai.usage.input_tokens": 6,
    "gen_ai.usage.total_tokens": 6,
    "gen_ai.usage.cost": 0.0000006,
}


CONVENTION_CASES = [
    pytest.param(
        OTEL_CURRENT_OPENAI,
        {
            "operation": "chat",
            "provider": "openai",
            "request_model": "gpt-4o-mini",
            "response_model": "gpt-4o-mini-2024-07-18",
            "input_tokens": 1200,
            "output_tokens": 85,
            "cache_read_tokens": 1024,
            "reasoning_tokens": 0,
            "total_tokens": 1285,
            "finish_reasons": ["stop"],
            "time_to_first_token_s": 0.42,
            "conversation_id": "conv_01",
            "streaming": True,
            "conventions": ["otel_genai"],
            "issues": [],
        },
        id="otel-current-openai-handler",
    ),
    pytest.param(
        OTEL_OPENAI_V2_PATCH,
        {
            "provider": "openai",
            "finish_reasons": ["stop", "length"],
            "total_tokens": 27,
            "conventions": ["otel_genai", "otel_genai_deprecated"],
            "source_attributes": {
                "operation": "gen_ai.operation.name",
                "provider": "gen_ai.system",
                "request_model": "gen_ai.request.model",
                "response_model": "gen_ai.response.model",
                "input_tokens": "gen_ai.usage.input_tokens",
                "output_tokens": "gen_ai.usage.output_tokens",
                "finish_reasons": "gen_ai.response.finish_reasons",
            },
            "issues": [],
        },
        id="otel-openai-v2-patch-gen_ai.system",
    ),
    pytest.param(
        OTEL_DEPRECATED_TOKENS,
        {
            "operation": "text_completion",
            "input_tokens": 9,
            "output_tokens": 16,
            "total_tokens": 25,
            "conventions": ["otel_genai", "otel_genai_deprecated"],
        },
        id="otel-deprecated-prompt-completion-tokens",
    ),
    pytest.param(
        OPENLLMETRY_CURRENT_ANTHROPIC,
        {
            "operation": "chat",
            "provider": "anthropic",
            "input_tokens": 2100,
            "output_tokens": 300,
            "cache_read_tokens": 2000,
            "cache_write_tokens": 0,
            "total_tokens": 2400,
            "streaming": False,
            "conventions": ["otel_genai", "openllmetry"],
            "issues": [],
        },
        id="openllmetry-current-anthropic-cache-included",
    ),
    pytest.param(
        OPENLLMETRY_MIDDLE_OPENAI,
        {
            "operation": "chat",
            "provider": "openai",
            "request_model": "gpt-4o",
            "input_tokens": 50,
            "output_tokens": 12,
            "reasoning_tokens": 0,
            "total_tokens": 62,
            "streaming": True,
            "conversation_id": "sess-9",
            # gen_ai.request.model and gen_ai.response.model are current OTel names.
            "conventions": ["otel_genai", "otel_genai_deprecated", "openllmetry"],
            "issues": ["provider_normalized"],
        },
        id="openllmetry-middle-openai",
    ),
    pytest.param(
        OPENLLMETRY_MIDDLE_ANTHROPIC_UNCACHED_INPUT,
        {
            "provider": "anthropic",
            "input_tokens": 1512,
            "output_tokens": 30,
            "cache_read_tokens": 1500,
            "cache_write_tokens": 0,
            "total_tokens": 1542,
            "issues": [
                "provider_normalized",
                "input_tokens_excluded_cache",
                "total_tokens_recomputed",
            ],
        },
        id="openllmetry-middle-anthropic-input-excludes-cache",
    ),
    pytest.param(
        OPENLLMETRY_EARLIEST,
        {
            "operation": "text_completion",
            "provider": "openai",
            "request_model": "text-davinci-003",
            "response_model": "text-davinci-003",
            "input_tokens": 5,
            "output_tokens": 16,
            "total_tokens": 21,
            "conventions": ["openllmetry"],
            "source_attributes": {
                "operation": "llm.request.type",
                "provider": "llm.vendor",
                "request_model": "llm.request.model",
                "response_model": "llm.response.model",
                "input_tokens": "llm.usage.prompt_tokens",
                "output_tokens": "llm.usage.completion_tokens",
                "total_tokens": "llm.usage.total_tokens",
            },
        },
        id="openllmetry-earliest",
    ),
    pytest.param(
        OPENINFERENCE_OPENAI,
        {
            "operation": "chat",
            "provider": "openai",
            "request_model": "gpt-4o-mini-2024-07-18",
            "response_model": None,
            "input_tokens": 1200,
            "output_tokens": 40,
            "cache_read_tokens": 1024,
            "reasoning_tokens": 0,
            "total_tokens": 1240,
            "streaming": True,
            "conversation_id": "sess-42",
            "reported_cost": 0.00021,
            "conventions": ["openinference"],
            "issues": [],
        },
        id="openinference-openai-llm",
    ),
    pytest.param(
        OPENINFERENCE_AZURE_EMBEDDING,
        {
            "operation": "embeddings",
            "provider": "azure.ai.openai",
            "request_model": "text-embedding-3-small",
            "input_tokens": 8,
            "output_tokens": None,
            "total_tokens": 8,
            "streaming": None,
            "source_attributes": {
                "operation": "openinference.span.kind",
                "provider": "llm.provider",
                "request_model": "embedding.model_name",
                "input_tokens": "llm.token_count.prompt",
                "total_tokens": "llm.token_count.total",
            },
        },
        id="openinference-azure-embedding",
    ),
    pytest.param(
        OPENLIT_OPENAI,
        {
            "operation": "chat",
            "provider": "openai",
            "input_tokens": 14,
            "output_tokens": 100,
            "total_tokens": 114,
            "reported_cost": 0.00104,
            "time_to_first_token_s": 0.35,
            "streaming": False,
            # gen_ai.usage.total_tokens is OpenLLMetry's name first.
            "conventions": [
                "otel_genai",
                "otel_genai_deprecated",
                "openllmetry",
                "openlit",
            ],
            "issues": [],
        },
        id="openlit-openai",
    ),
    pytest.param(
        OPENLIT_AZURE_EMBEDDING,
        {
            "operation": "embeddings",
            "provider": "azure.ai.openai",
            "total_tokens": 6,
            "reported_cost": 0.0000006,
            "issues": ["operation_normalized", "provider_normalized"],
        },
        id="openlit-azure-embedding",
    ),
]


@pytest.mark.parametrize(("attributes", "expected"), CONVENTION_CASES)
def test_convention(attributes: dict[str, Any], expected: dict[str, Any]) -> None:
    result = genai(attributes)

    assert {key: result[key] for key in expected} == expected
    assert_round_trips(result)


# --- quirks ----------------------------------------------------------------

BASE = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai"}

QUIRK_CASES = [
    pytest.param(
        {"gen_ai.usage.input_tokens": "12", "gen_ai.usage.output_tokens": " 3 "},
        {"input_tokens": 12, "output_tokens": 3, "total_tokens": 15},
        ["tokens_as_string"],
        id="tokens-as-strings",
    ),
    pytest.param(
        {"gen_ai.usage.input_tokens": "12.0"},
        {"input_tokens": 12},
        ["tokens_as_string"],
        id="tokens-as-float-string",
    ),
    pytest.param(
        {"gen_ai.usage.input_tokens": -1, "gen_ai.usage.output_tokens": 4},
        {"input_tokens": None, "output_tokens": 4, "total_tokens": None},
        ["invalid_tokens:input_tokens"],
        id="negative-tokens",
    ),
    pytest.param(
        {"gen_ai.usage.output_tokens": "lots", "gen_ai.usage.input_tokens": 4},
        {"output_tokens": None, "input_tokens": 4},
        ["invalid_tokens:output_tokens"],
        id="non-numeric-tokens",
    ),
    pytest.param(
        {"gen_ai.usage.input_tokens": 2.5, "gen_ai.usage.cache_read.input_tokens": []},
        {"input_tokens": None, "cache_read_tokens": None},
        ["invalid_tokens:input_tokens", "invalid_tokens:cache_read_tokens"],
        id="fractional-and-list-tokens",
    ),
    pytest.param(
        {"gen_ai.usage.input_tokens": True},
        {"input_tokens": None},
        ["invalid_tokens:input_tokens"],
        id="bool-tokens",
    ),
    pytest.param(
        {"gen_ai.usage.input_tokens": 2**70},
        {"input_tokens": None},
        ["invalid_tokens:input_tokens"],
        id="tokens-beyond-avro-long",
    ),
    pytest.param(
        {
            "gen_ai.usage.input_tokens": 2**62,
            "gen_ai.usage.cache_read.input_tokens": 2**62 + 1,
            "gen_ai.usage.cache_write.input_tokens": 2**62,
            "gen_ai.usage.output_tokens": 1,
        },
        {
            "input_tokens": None,
            "cache_read_tokens": None,
            "cache_write_tokens": None,
            "output_tokens": 1,
        },
        [
            "invalid_tokens:input_tokens",
            "invalid_tokens:cache_read_tokens",
            "invalid_tokens:cache_write_tokens",
        ],
        id="counts-past-a-trillion-are-not-counts",
    ),
    pytest.param(
        {"gen_ai.usage.input_tokens": -5, "gen_ai.usage.prompt_tokens": 7},
        {"input_tokens": 7},
        ["invalid_tokens:input_tokens"],
        id="invalid-newest-falls-back-to-older-convention",
    ),
    pytest.param(
        {"gen_ai.usage.input_tokens": "", "llm.token_count.prompt": 11},
        {"input_tokens": 11},
        [],
        id="empty-string-tokens-unset",
    ),
    pytest.param(
        {
            "gen_ai.request.max_tokens": -1,
            "gen_ai.request.seed": "",
            "gen_ai.user": "",
            "gen_ai.request.model": "",
            "llm.model_name": "gpt-4o",
        },
        {"request_model": "gpt-4o"},
        [],
        id="unset-markers-max_tokens-seed-empty-model",
    ),
    pytest.param(
        {"gen_ai.response.finish_reasons": "stop"},
        {"finish_reasons": ["stop"]},
        ["finish_reasons_as_string"],
        id="finish-reason-single-string",
    ),
    pytest.param(
        {"gen_ai.response.finish_reasons": '["stop", "tool_calls"]'},
        {"finish_reasons": ["stop", "tool_calls"]},
        ["finish_reasons_as_json"],
        id="finish-reasons-json-string",
    ),
    pytest.param(
        {"gen_ai.response.finish_reasons": ("length",)},
        {"finish_reasons": ["length"]},
        [],
        id="finish-reasons-tuple",
    ),
    pytest.param(
        {"gen_ai.response.finish_reasons": [""], "llm.response.finish_reason": "stop"},
        {"finish_reasons": ["stop"]},
        [],
        id="finish-reasons-empty-falls-back-to-singular",
    ),
    pytest.param(
        {"gen_ai.response.finish_reasons": "[not json"},
        {"finish_reasons": ["[not json"]},
        ["finish_reasons_as_string"],
        id="finish-reasons-broken-json-kept",
    ),
    pytest.param(
        {"gen_ai.server.ttft": 0.35},
        {"time_to_first_token_s": 0.35},
        [],
        id="ttft-openlit-seconds",
    ),
    pytest.param(
        {"gen_ai.response.time_to_first_chunk": 420},
        {"time_to_first_token_s": 0.42},
        ["ttft_assumed_ms"],
        id="ttft-milliseconds",
    ),
    pytest.param(
        {"gen_ai.response.time_to_first_chunk": "0.5"},
        {"time_to_first_token_s": 0.5},
        ["number_as_string:time_to_first_token_s"],
        id="ttft-string",
    ),
    pytest.param(
        {"gen_ai.response.time_to_first_chunk": -1.0, "gen_ai.server.ttft": 1.5},
        {"time_to_first_token_s": 1.5},
        ["invalid_value:time_to_first_token_s"],
        id="ttft-negative-falls-back",
    ),
    pytest.param(
        {"gen_ai.response.time_to_first_chunk": 10**400},
        {"time_to_first_token_s": None},
        ["invalid_value:time_to_first_token_s"],
        id="ttft-integer-beyond-float",
    ),
    pytest.param(
        {"gen_ai.response.time_to_first_chunk": float("nan")},
        {"time_to_first_token_s": None},
        ["invalid_value:time_to_first_token_s"],
        id="ttft-nan",
    ),
    pytest.param(
        {"gen_ai.request.stream": True},
        {"streaming": True},
        [],
        id="stream-otel",
    ),
    pytest.param(
        {"llm.is_streaming": "true"},
        {"streaming": True},
        ["bool_as_string:streaming"],
        id="stream-openllmetry-string",
    ),
    pytest.param(
        {"gen_ai.request.is_stream": False},
        {"streaming": False},
        [],
        id="stream-openlit",
    ),
    pytest.param(
        {"llm.invocation_parameters": '{"model": "gpt-4o", "stream": false}'},
        {"streaming": False},
        [],
        id="stream-openinference-invocation-parameters",
    ),
    pytest.param(
        {"llm.invocation_parameters": '{"model": "gpt-4o"}'},
        {"streaming": None},
        [],
        id="stream-absent-from-invocation-parameters",
    ),
    pytest.param(
        {"llm.invocation_parameters": '{"stream": tru'},
        {"streaming": None},
        [],
        id="stream-broken-invocation-parameters",
    ),
    pytest.param(
        {"gen_ai.request.stream": "maybe"},
        {"streaming": None},
        ["invalid_value:streaming"],
        id="stream-garbage",
    ),
    pytest.param(
        {"session.id": "s-1"},
        {"conversation_id": "s-1"},
        [],
        id="conversation-openinference-session",
    ),
    pytest.param(
        {"traceloop.association.properties.conversation_id": "c-7"},
        {"conversation_id": "c-7"},
        [],
        id="conversation-traceloop-conversation_id",
    ),
    pytest.param(
        {"traceloop.association.properties.thread_id": "t-3", "session.id": "s-1"},
        {"conversation_id": "t-3"},
        [],
        id="conversation-traceloop-thread_id-before-session",
    ),
    pytest.param(
        {"gen_ai.conversation.id": 12345},
        {"conversation_id": "12345"},
        [],
        id="conversation-numeric",
    ),
    pytest.param(
        {"gen_ai.request.model": "m" * 1000},
        {"request_model": "m" * 256},
        ["value_truncated:request_model"],
        id="overlong-model-truncated",
    ),
    pytest.param(
        {"gen_ai.request.model": "gpt-\ud800o"},
        {"request_model": "gpt-?o"},
        [],
        id="lone-surrogate-replaced",
    ),
    pytest.param(
        {"gen_ai.request.model": ["gpt-4o"]},
        {"request_model": None},
        ["invalid_value:request_model"],
        id="model-as-list",
    ),
    pytest.param(
        {"gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 10},
        {
            "total_tokens": 110,
            "source_attributes": {
                "operation": "gen_ai.operation.name",
                "provider": "gen_ai.provider.name",
                "input_tokens": "gen_ai.usage.input_tokens",
                "output_tokens": "gen_ai.usage.output_tokens",
            },
        },
        [],
        id="total-derived-without-source",
    ),
    pytest.param(
        {"gen_ai.usage.input_tokens": 100, "gen_ai.usage.total_tokens": 150},
        {"total_tokens": 150},
        [],
        id="total-from-attribute",
    ),
    pytest.param(
        {"llm.cost.total": "0.0042"},
        {"reported_cost": 0.0042},
        ["number_as_string:reported_cost"],
        id="cost-as-string",
    ),
    pytest.param(
        {"gen_ai.usage.cost": -3},
        {"reported_cost": None},
        ["invalid_value:reported_cost"],
        id="cost-negative",
    ),
]


@pytest.mark.parametrize(("extra", "expected", "issues"), QUIRK_CASES)
def test_quirk(
    extra: dict[str, Any], expected: dict[str, Any], issues: list[str]
) -> None:
    result = genai({**BASE, **extra})

    assert {key: result[key] for key in expected} == expected
    assert result["issues"] == issues
    assert_round_trips(result)


PROVIDER_SPELLINGS = [
    ("OpenAI", "openai"),
    ("Anthropic", "anthropic"),
    ("az.ai.openai", "azure.ai.openai"),
    ("azure", "azure.ai.openai"),
    ("Azure_OpenAI", "azure.ai.openai"),
    ("az.ai.inference", "azure.ai.inference"),
    ("vertex_ai", "gcp.vertex_ai"),
    ("VertexAI", "gcp.vertex_ai"),
    ("bedrock", "aws.bedrock"),
    ("AWSBedrock", "aws.bedrock"),
    ("aws", "aws.bedrock"),
    ("mistralai", "mistral_ai"),
    ("MistralAI", "mistral_ai"),
    ("mistral", "mistral_ai"),
    ("google", "gcp.gen_ai"),
    ("gemini", "gcp.gemini"),
    ("xai", "x_ai"),
    ("watsonx", "ibm.watsonx.ai"),
    ("DeepSeek", "deepseek"),
    ("Groq", "groq"),
    ("Ollama", "ollama"),
    ("together_ai", "together_ai"),
]


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [pytest.param(s, c, id=s) for s, c in PROVIDER_SPELLINGS],
)
def test_provider_spellings(spelling: str, canonical: str) -> None:
    result = genai({"gen_ai.system": spelling})

    assert result["provider"] == canonical
    assert ("provider_normalized" in result["issues"]) == (spelling != canonical)


@pytest.mark.parametrize(
    ("attribute", "value", "operation"),
    [
        pytest.param(
            "gen_ai.operation.name", "invoke_agent", "invoke_agent", id="otel"
        ),
        pytest.param("llm.request.type", "chat", "chat", id="llm-chat"),
        pytest.param("llm.request.type", "completion", "text_completion", id="compl"),
        pytest.param("llm.request.type", "embedding", "embeddings", id="embedding"),
        pytest.param("llm.request.type", "rerank", "rerank", id="rerank"),
        pytest.param("llm.request.type", "unknown", None, id="llm-unknown-unset"),
        pytest.param("openinference.span.kind", "LLM", "chat", id="oi-llm"),
        pytest.param("openinference.span.kind", "EMBEDDING", "embeddings", id="oi-emb"),
        pytest.param("openinference.span.kind", "TOOL", "execute_tool", id="oi-tool"),
        pytest.param("openinference.span.kind", "RETRIEVER", "retrieval", id="oi-ret"),
        pytest.param("openinference.span.kind", "AGENT", "invoke_agent", id="oi-agent"),
        pytest.param(
            "openinference.span.kind", "CHAIN", "invoke_workflow", id="oi-chain"
        ),
        pytest.param("openinference.span.kind", "RERANKER", "rerank", id="oi-rerank"),
        pytest.param(
            "openinference.span.kind", "GUARDRAIL", "guardrail", id="oi-unknown-kept"
        ),
        pytest.param("traceloop.span.kind", "workflow", "invoke_workflow", id="tl-wf"),
        pytest.param("traceloop.span.kind", "task", "task", id="tl-task-kept"),
    ],
)
def test_operation_mapping(attribute: str, value: str, operation: str | None) -> None:
    result = genai({attribute: value, "gen_ai.request.model": "m"})

    assert result["operation"] == operation


def test_operation_precedence_newest_first() -> None:
    result = genai(
        {
            "openinference.span.kind": "CHAIN",
            "llm.request.type": "embedding",
            "gen_ai.operation.name": "chat",
        }
    )

    assert result["operation"] == "chat"
    assert result["source_attributes"]["operation"] == "gen_ai.operation.name"


def test_operation_from_span_name() -> None:
    result = genai({"gen_ai.request.model": "gpt-4o"}, span_name="chat gpt-4o")

    assert result["operation"] == "chat"
    assert result["issues"] == ["operation_from_span_name"]
    assert "operation" not in result["source_attributes"]


def test_span_name_ignored_when_not_an_operation() -> None:
    result = genai({"gen_ai.request.model": "gpt-4o"}, span_name="openai.chat")

    assert result["operation"] is None


# --- token reconciliation --------------------------------------------------


@pytest.mark.parametrize(
    ("tokens", "expected", "issues"),
    [
        pytest.param(
            {"input": 2100, "output": 300, "read": 2000, "write": 0},
            (2100, 300, 2400),
            [],
            id="already-inclusive-untouched",
        ),
        pytest.param(
            {"input": 10, "output": 5, "read": 300, "write": 200},
            (510, 5, 515),
            ["input_tokens_excluded_cache"],
            id="input-below-cache",
        ),
        pytest.param(
            {"input": 100, "output": 50, "read": 60, "write": 0, "total": 210},
            (160, 50, 210),
            ["input_tokens_excluded_cache"],
            id="reported-total-counts-cache",
        ),
        pytest.param(
            {"input": 100, "output": 50, "read": 60, "write": 0, "total": 150},
            (100, 50, 150),
            [],
            id="plausibly-inclusive-untouched",
        ),
        pytest.param(
            {"input": 10, "output": 5, "read": 300, "write": 200, "total": 15},
            (510, 5, 515),
            ["input_tokens_excluded_cache", "total_tokens_recomputed"],
            id="total-of-uncorrected-counts-recomputed",
        ),
        pytest.param(
            {"input": 40, "output": 10, "reasoning": 50},
            (40, 60, 100),
            ["output_tokens_excluded_reasoning"],
            id="output-below-reasoning",
        ),
        pytest.param(
            {"input": 40, "output": 80, "reasoning": 50},
            (40, 80, 120),
            [],
            id="reasoning-inside-output",
        ),
    ],
)
def test_token_reconciliation(
    tokens: dict[str, int], expected: tuple[int, int, int], issues: list[str]
) -> None:
    names = {
        "input": "gen_ai.usage.input_tokens",
        "output": "gen_ai.usage.output_tokens",
        "read": "gen_ai.usage.cache_read.input_tokens",
        "write": "gen_ai.usage.cache_creation.input_tokens",
        "reasoning": "gen_ai.usage.reasoning.output_tokens",
        "total": "gen_ai.usage.total_tokens",
    }
    attributes = {names[key]: value for key, value in tokens.items()}

    result = genai({**BASE, **attributes})

    got = (result["input_tokens"], result["output_tokens"], result["total_tokens"])
    assert got == expected
    assert result["issues"] == issues


def test_cache_correction_applied_once() -> None:
    first = genai({**BASE, **OPENLLMETRY_MIDDLE_ANTHROPIC_UNCACHED_INPUT})
    again = {
        **OPENLLMETRY_MIDDLE_ANTHROPIC_UNCACHED_INPUT,
        "gen_ai.usage.prompt_tokens": first["input_tokens"],
        "llm.usage.total_tokens": first["total_tokens"],
    }

    second = genai(again)

    assert second["input_tokens"] == first["input_tokens"] == 1512
    assert "input_tokens_excluded_cache" not in second["issues"]


OPENINFERENCE_BEDROCK_INVOKE = {
    # openinference-instrumentation-bedrock, InvokeModel with Claude: the
    # prompt count is Anthropic's input_tokens, without the cache read.
    "openinference.span.kind": "LLM",
    "llm.provider": "aws",
    "llm.system": "anthropic",
    "llm.model_name": "claude-3-5-sonnet-20240620",
    "llm.token_count.prompt": 3000,
    "llm.token_count.completion": 100,
    "llm.token_count.prompt_details.cache_read": 2000,
}
BEDROCK_SCOPE = {
    "scope_name": "openinference.instrumentation.bedrock",
    "scope_version": "0.1.30",
}


def test_input_without_cache_corrected_by_scope_though_input_exceeds_cache() -> None:
    result = genai(OPENINFERENCE_BEDROCK_INVOKE, **BEDROCK_SCOPE)

    # 3000 uncached + 2000 read from the cache
    assert (result["input_tokens"], result["total_tokens"]) == (5000, 5100)
    assert "input_tokens_excluded_cache" in result["issues"]


def test_unknown_scope_with_input_above_cache_is_taken_as_inclusive() -> None:
    result = genai(OPENINFERENCE_BEDROCK_INVOKE, scope_name="some.other.lib")

    assert result["input_tokens"] == 3000
    assert "input_tokens_excluded_cache" not in result["issues"]


@pytest.mark.parametrize(
    ("version", "corrected"),
    [
        pytest.param("0.9.0", False, id="before-first"),
        pytest.param("1.0.0", True, id="first"),
        pytest.param("1.4.2rc1", True, id="pre-release-inside"),
        pytest.param("2.0.0", False, id="fixed"),
        pytest.param("not-a-version", False, id="unreadable"),
        pytest.param("", False, id="no-version"),
    ],
)
def test_cache_exclusive_scope_version_range(
    monkeypatch: pytest.MonkeyPatch, version: str, corrected: bool
) -> None:
    monkeypatch.setattr(
        normalize, "CACHE_EXCLUSIVE_SCOPES", (("lib.x", "1.0", "2.0.0"),)
    )
    attributes = {**BASE, "gen_ai.usage.input_tokens": 900}
    attributes["gen_ai.usage.cache_read.input_tokens"] = 100

    result = genai(attributes, scope_name="lib.x", scope_version=version)

    assert result["input_tokens"] == (1000 if corrected else 900)


@pytest.mark.parametrize(
    ("provider", "expected"),
    [
        # Gemini reports thoughts apart from output: the total says so.
        pytest.param("gcp.gemini", (1000, 3500, 4500), id="gemini-thoughts"),
        pytest.param("openai", (1000, 3500, 4500), id="any-provider"),
    ],
)
def test_reasoning_excluded_from_output_proved_by_total(
    provider: str, expected: tuple[int, int, int]
) -> None:
    result = genai(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": provider,
            "gen_ai.usage.input_tokens": 1000,
            "gen_ai.usage.output_tokens": 2000,
            "gen_ai.usage.reasoning.output_tokens": 1500,
            "gen_ai.usage.total_tokens": 4500,
        }
    )

    got = (result["input_tokens"], result["output_tokens"], result["total_tokens"])
    assert got == expected
    assert result["issues"] == ["output_tokens_excluded_reasoning"]


def test_total_proving_cache_and_reasoning_corrects_both() -> None:
    result = genai(
        {
            **BASE,
            "gen_ai.usage.input_tokens": 1000,
            "gen_ai.usage.output_tokens": 2000,
            "gen_ai.usage.cache_read.input_tokens": 300,
            "gen_ai.usage.reasoning.output_tokens": 1500,
            "gen_ai.usage.total_tokens": 4800,
        }
    )

    assert (result["input_tokens"], result["output_tokens"]) == (1300, 3500)


@pytest.mark.parametrize(
    ("provider", "input_tokens", "output_tokens"),
    [
        pytest.param("gcp.vertex_ai", 1000, 2500, id="gemini-reasoning-apart"),
        pytest.param("anthropic", 1500, 2000, id="others-cache-apart"),
    ],
)
def test_total_that_fits_cache_or_reasoning_read_by_provider(
    provider: str, input_tokens: int, output_tokens: int
) -> None:
    result = genai(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": provider,
            "gen_ai.usage.input_tokens": 1000,
            "gen_ai.usage.output_tokens": 2000,
            "gen_ai.usage.cache_read.input_tokens": 500,
            "gen_ai.usage.reasoning.output_tokens": 500,
            "gen_ai.usage.total_tokens": 3500,
        }
    )

    assert (result["input_tokens"], result["output_tokens"]) == (
        input_tokens,
        output_tokens,
    )


def test_cache_write_newer_spelling_preferred() -> None:
    result = genai(
        {
            **BASE,
            "gen_ai.usage.cache_write.input_tokens": 7,
            "gen_ai.usage.cache_creation.input_tokens": 9,
        }
    )

    assert result["cache_write_tokens"] == 7
    assert (
        result["source_attributes"]["cache_write_tokens"]
        == "gen_ai.usage.cache_write.input_tokens"
    )


# --- errors ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("attributes", "status", "error_type"),
    [
        pytest.param(
            {"error.type": "RateLimitError"}, "ERROR", "RateLimitError", id="a"
        ),
        pytest.param({}, "ERROR", "_OTHER", id="status-error-fallback"),
        pytest.param({}, "STATUS_CODE_ERROR", "_OTHER", id="status-enum-name"),
        pytest.param({}, "OK", None, id="ok"),
        pytest.param({}, "UNSET", None, id="unset"),
        pytest.param(
            {"error.type": "timeout"}, "UNSET", "timeout", id="attr-no-status"
        ),
    ],
)
def test_error_type(
    attributes: dict[str, Any], status: str, error_type: str | None
) -> None:
    result = genai({**BASE, **attributes}, status_code=status)

    assert result["error_type"] == error_type


# --- recognition -----------------------------------------------------------


@pytest.mark.parametrize(
    "attributes",
    [
        pytest.param({}, id="empty"),
        pytest.param(
            {
                "http.request.method": "POST",
                "url.full": "https://api.example.com/v1/orders",
                "http.response.status_code": 500,
                "error.type": "500",
                "server.address": "api.example.com",
            },
            id="http",
        ),
        pytest.param(
            {
                "db.system.name": "postgresql",
                "db.query.text": "SELECT 1",
                "db.namespace": "llmobs",
            },
            id="db",
        ),
        pytest.param(
            {"session.id": "s-1", "error.type": "ValueError"}, id="generic-only"
        ),
        pytest.param({"gen_ai": "x", "llmx.model": "y"}, id="near-miss-prefixes"),
    ],
)
def test_non_genai_span_returns_none(attributes: dict[str, Any]) -> None:
    assert normalize_genai(attributes, span_name="GET", status_code="ERROR") is None


@pytest.mark.parametrize(
    ("attributes", "conventions"),
    [
        pytest.param({"gen_ai.input.messages": "[]"}, ["otel_genai"], id="otel-prefix"),
        pytest.param(
            {"llm.input_messages.0.message.role": "user"},
            ["openinference"],
            id="openinference-prefix",
        ),
        pytest.param({"gen_ai.prompt.0.content": "x"}, ["openllmetry"], id="tl-prompt"),
        pytest.param({"traceloop.entity.name": "x"}, ["openllmetry"], id="traceloop"),
        pytest.param({"gen_ai.prompt": "x"}, ["openlit"], id="openlit-prompt"),
        pytest.param({"llm.headers": "None"}, [], id="llm-prefix-no-convention"),
    ],
)
def test_recognised_by_prefix(
    attributes: dict[str, Any], conventions: list[str]
) -> None:
    result = genai(attributes)

    assert result["conventions"] == conventions
    assert result["input_tokens"] is None
    assert_round_trips(result)


def test_output_keys_match_schema() -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    span_fields = schema["fields"][5]["type"]["items"]["fields"]
    genai_type = next(f for f in span_fields if f["name"] == "genai")["type"][1]
    schema_keys = [field["name"] for field in genai_type["fields"]]

    assert list(GENAI_FIELDS) == schema_keys
    assert list(genai(OTEL_CURRENT_OPENAI)) == schema_keys


def test_every_listed_attribute_reaches_its_field() -> None:
    for field, sources in FIELD_SOURCES.items():
        for name, _ in sources:
            value: Any = {
                "finish_reasons": ["stop"],
                "time_to_first_token_s": 0.25,
                "streaming": True,
                "reported_cost": 0.5,
                "operation": "chat",
                "provider": "openai",
            }.get(field, 7 if field.endswith("_tokens") else "v-1")
            if name == "llm.invocation_parameters":
                value = '{"stream": true}'

            result = genai({"gen_ai.input.messages": "[]", name: value})

            assert result["source_attributes"].get(field) == name, name


class FailingAttributes(dict[str, Any]):
    """Attributes whose lookups fail, as a defect inside normalization would."""

    def get(self, key: str, default: Any = None) -> Any:
        raise RuntimeError("lookup failed")


def test_unexpected_failure_yields_marked_record(
    caplog: pytest.LogCaptureFixture,
) -> None:
    attributes = FailingAttributes({"gen_ai.request.model": "secret prompt text"})

    result = genai(attributes)

    assert result["issues"] == ["normalize_failed"]
    assert "RuntimeError" in caplog.text
    assert "secret prompt text" not in caplog.text
    assert_round_trips(result)


def test_none_round_trips_as_null_genai() -> None:
    assert_round_trips(None)


# --- property --------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(
        ["12", "-1", "", " ", "1e400", "nan", '["stop"]', "true", "\ud800gpt"]
    ),
    st.binary(max_size=20),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=8), inner, max_size=4),
    ),
    max_leaves=12,
)
keys = st.one_of(
    st.sampled_from(sorted({*KEY_CONVENTION, "session.id", "error.type"})),
    st.text(max_size=30),
    st.builds(
        "".join,
        st.tuples(
            st.sampled_from(["gen_ai.", "llm.", "traceloop.", "http.", "db."]),
            st.text(max_size=12),
        ),
    ),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    attributes=st.dictionaries(keys, values, max_size=12),
    span_name=st.text(max_size=30),
    status_code=st.sampled_from(["UNSET", "OK", "ERROR"]),
)
def test_never_raises_and_always_encodes(
    attributes: dict[str, Any], span_name: str, status_code: str
) -> None:
    result = normalize_genai(attributes, span_name=span_name, status_code=status_code)

    is_genai = any(
        key in KEY_CONVENTION
        or key.startswith(("gen_ai.", "llm.", "traceloop.", "openinference."))
        for key in attributes
    )
    if not is_genai:
        assert result is None
        return
    assert result is not None
    assert list(result) == list(GENAI_FIELDS)
    assert "normalize_failed" not in result["issues"]
    for field in ("input_tokens", "output_tokens", "total_tokens"):
        assert result[field] is None or 0 <= result[field] < 2**63
    ttft = result["time_to_first_token_s"]
    assert ttft is None or (math.isfinite(ttft) and ttft >= 0)
    assert_round_trips(result)


def test_nul_in_normalized_text_is_replaced_and_flagged() -> None:
    record = normalize_genai(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "open\x00ai",
            "gen_ai.request.model": "gpt\x004o",
            "gen_ai.response.finish_reasons": ["st\x00op"],
        }
    )

    assert record is not None
    assert record["request_model"] == "gpt\ufffd4o"
    assert "\x00" not in record["provider"]
    assert record["finish_reasons"] == ["st\ufffdop"]
    assert "nul_replaced" in record["issues"]
