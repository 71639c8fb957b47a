"""The calls the workload makes: one function per scenario, per provider.

Each scenario uses the official SDK the way an application would, so the
instrumentation patched into the process records what it records in the
field. Error scenarios pass when the SDK raises the expected error; agent
scenarios wrap several model calls and a tool call in one manual span.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anthropic
import openai
from opentelemetry.trace import SpanKind, Tracer

from llmobs.errors import ObservatoryError
from llmobs.workload.provider import ERROR_HEADER

log = logging.getLogger(__name__)

OPENAI_MODEL = "gpt-4o-mini"
OPENAI_REASONING_MODEL = "o4-mini"
EMBEDDING_MODEL = "text-embedding-3-small"
ANTHROPIC_MODEL = "claude-3-5-haiku-latest"
ANTHROPIC_CACHE_MODEL = "claude-sonnet-4-5"
AGENT_NAME = "weather-agent"
MAX_TOKENS = 256

# Long enough (over 1024 tokens) for both providers to cache it.
LONG_INSTRUCTIONS = (
    "You are a meticulous travel assistant. Answer with the facts the tools "
    "return, never invent numbers, and keep each answer under three sentences. "
) * 40

WEATHER_TOOL_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "City name"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
}
OPENAI_TOOLS: Any = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": WEATHER_TOOL_SCHEMA,
        },
    }
]
ANTHROPIC_TOOLS: Any = [
    {
        "name": "get_weather",
        "description": "Current weather for a city",
        "input_schema": WEATHER_TOOL_SCHEMA,
    }
]


class ScenarioFailed(ObservatoryError):
    """A scenario did not behave as the fake provider promises."""


@dataclass(frozen=True)
class Clients:
    """What a scenario may use: SDK clients and a tracer for manual spans."""

    tracer: Tracer
    openai_client: openai.OpenAI | None = None
    anthropic_client: anthropic.Anthropic | None = None

    def oai(self) -> openai.OpenAI:
        if self.openai_client is None:
            raise ScenarioFailed("this runner has no OpenAI client")
        return self.openai_client

    def claude(self) -> anthropic.Anthropic:
        if self.anthropic_client is None:
            raise ScenarioFailed("this runner has no Anthropic client")
        return self.anthropic_client


Scenario = Callable[[Clients], None]


def get_weather(arguments: Mapping[str, Any]) -> str:
    """The local tool the agents call; its result goes back to the model."""
    city = str(arguments.get("city", "Paris"))
    unit = str(arguments.get("unit", "celsius"))
    return json.dumps({"city": city, "temperature": 21, "unit": unit})


def expect_error(kind: type[Exception], call: Callable[[], object]) -> None:
    """Run ``call``; it must raise ``kind`` (a provider error the SDK maps)."""
    try:
        call()
    except kind:
        return
    raise ScenarioFailed(f"expected {kind.__name__}, the call succeeded")


def user(text: str) -> Any:
    return {"role": "user", "content": text}


# OpenAI scenarios


def openai_chat(clients: Clients) -> None:
    clients.oai().chat.completions.create(
        model=OPENAI_MODEL,
        messages=[
            {"role": "system", "content": "You answer briefly."},
            user("What is OpenTelemetry?"),
        ],
        max_tokens=MAX_TOKENS,
        temperature=0.2,
    )


def openai_chat_stream(clients: Clients) -> None:
    stream = clients.oai().chat.completions.create(
        model=OPENAI_MODEL,
        messages=[user("Stream a short poem about tracing.")],
        max_tokens=MAX_TOKENS,
        stream=True,
        stream_options={"include_usage": True},
    )
    usage = None
    for chunk in stream:
        usage = chunk.usage or usage
    if usage is None:
        raise ScenarioFailed("stream ended without a usage chunk")


def openai_embeddings(clients: Clients) -> None:
    clients.oai().embeddings.create(
        model=EMBEDDING_MODEL, input=["observability for LLMs", "token usage"]
    )


def openai_tool_round_trip(clients: Clients) -> None:
    _openai_tool_loop(clients, "What is the weather in Paris?")


def openai_cached_tokens(clients: Clients) -> None:
    response = clients.oai().chat.completions.create(
        model=OPENAI_MODEL,
        messages=[
            {"role": "system", "content": LONG_INSTRUCTIONS},
            user("Plan a day in Lisbon."),
        ],
        max_tokens=MAX_TOKENS,
    )
    details = response.usage.prompt_tokens_details if response.usage else None
    if details is None or not details.cached_tokens:
        raise ScenarioFailed("a long prompt reported no cached tokens")


def openai_reasoning(clients: Clients) -> None:
    clients.oai().chat.completions.create(
        model=OPENAI_REASONING_MODEL,
        messages=[user("How many primes are below 30?")],
        max_completion_tokens=MAX_TOKENS,
    )


def openai_error_429(clients: Clients) -> None:
    expect_error(openai.RateLimitError, lambda: _openai_failing_call(clients, 429))


def openai_error_500(clients: Clients) -> None:
    expect_error(openai.InternalServerError, lambda: _openai_failing_call(clients, 500))


def openai_agent(clients: Clients) -> None:
    with _agent_span(clients.tracer, "openai", OPENAI_MODEL):
        _openai_tool_loop(clients, "Should I pack an umbrella for Paris?")
        clients.oai().chat.completions.create(
            model=OPENAI_MODEL,
            messages=[user("Summarise the forecast in five words.")],
            max_tokens=MAX_TOKENS,
        )


def _openai_failing_call(clients: Clients, status: int) -> object:
    return clients.oai().chat.completions.create(
        model=OPENAI_MODEL,
        messages=[user("This request fails on purpose.")],
        extra_headers={ERROR_HEADER: str(status)},
    )


def _openai_tool_loop(clients: Clients, question: str) -> None:
    """Ask, run the tool the model calls, and send its result back."""
    messages: list[Any] = [user(question)]
    first = clients.oai().chat.completions.create(
        model=OPENAI_MODEL, messages=messages, tools=OPENAI_TOOLS
    )
    calls = first.choices[0].message.tool_calls or []
    if not calls:
        raise ScenarioFailed("the model called no tool")
    messages.append(first.choices[0].message.model_dump(exclude_none=True))
    for call in calls:
        function = getattr(call, "function", None)
        if function is None:
            continue
        with _tool_span(clients.tracer, function.name, call.id):
            result = get_weather(json.loads(function.arguments))
        messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
    clients.oai().chat.completions.create(
        model=OPENAI_MODEL, messages=messages, tools=OPENAI_TOOLS
    )


# Anthropic scenarios


def anthropic_messages(clients: Clients) -> None:
    clients.claude().messages.create(
        model=ANTHROPIC_MODEL,
        max_tokens=MAX_TOKENS,
        system="You answer briefly.",
        messages=[user("What is OpenTelemetry?")],
        stop_sequences=["END"],
    )


def anthropic_stream(clients: Clients) -> None:
    stream = clients.claude().messages.create(
        model=ANTHROPIC_MODEL,
        max_tokens=MAX_TOKENS,
        messages=[user("Stream a short poem about tracing.")],
        stream=True,
    )
    for _event in stream:
        pass


def anthropic_cache_usage(clients: Clients) -> None:
    """Write a cached prefix, then read it back with the streaming helper."""
    # A fresh prefix per run, so the first call writes the cache and the
    # second reads it, whatever earlier runs left in the provider.
    system: Any = [
        {
            "type": "text",
            "text": f"Session {uuid.uuid4()}. {LONG_INSTRUCTIONS}",
            "cache_control": {"type": "ephemeral"},
        }
    ]
    first = clients.claude().messages.create(
        model=ANTHROPIC_CACHE_MODEL,
        max_tokens=MAX_TOKENS,
        system=system,
        messages=[user("Plan a day in Lisbon.")],
    )
    with clients.claude().messages.stream(
        model=ANTHROPIC_CACHE_MODEL,
        max_tokens=MAX_TOKENS,
        system=system,
        messages=[user("Plan a day in Porto.")],
    ) as stream:
        for _text in stream.text_stream:
            pass
        second = stream.get_final_message()
    if not first.usage.cache_creation_input_tokens:
        raise ScenarioFailed("the first cached call wrote no cache")
    if not second.usage.cache_read_input_tokens:
        raise ScenarioFailed("the second cached call read no cache")


def anthropic_tool_use(clients: Clients) -> None:
    _anthropic_tool_loop(clients, "What is the weather in Paris?")


def anthropic_error_429(clients: Clients) -> None:
    expect_error(
        anthropic.RateLimitError, lambda: _anthropic_failing_call(clients, 429)
    )


def anthropic_error_529(clients: Clients) -> None:
    expect_error(
        anthropic.OverloadedError, lambda: _anthropic_failing_call(clients, 529)
    )


def anthropic_agent(clients: Clients) -> None:
    with _agent_span(clients.tracer, "anthropic", ANTHROPIC_MODEL):
        _anthropic_tool_loop(clients, "Should I pack an umbrella for Paris?")


def _anthropic_failing_call(clients: Clients, status: int) -> object:
    return clients.claude().messages.create(
        model=ANTHROPIC_MODEL,
        max_tokens=MAX_TOKENS,
        messages=[user("This request fails on purpose.")],
        extra_headers={ERROR_HEADER: str(status)},
    )


def _anthropic_tool_loop(clients: Clients, question: str) -> None:
    """Ask, run the tool the model uses, and send its result back."""
    messages: list[Any] = [user(question)]
    first = clients.claude().messages.create(
        model=ANTHROPIC_MODEL,
        max_tokens=MAX_TOKENS,
        messages=messages,
        tools=ANTHROPIC_TOOLS,
    )
    uses = [block for block in first.content if block.type == "tool_use"]
    if not uses:
        raise ScenarioFailed("the model used no tool")
    messages.append({"role": "assistant", "content": first.content})
    results: list[Any] = []
    for use in uses:
        with _tool_span(clients.tracer, use.name, use.id):
            result = get_weather(dict(use.input))
        results.append(
            {"type": "tool_result", "tool_use_id": use.id, "content": result}
        )
    messages.append({"role": "user", "content": results})
    clients.claude().messages.create(
        model=ANTHROPIC_MODEL,
        max_tokens=MAX_TOKENS,
        messages=messages,
        tools=ANTHROPIC_TOOLS,
    )


# Manual spans an agent framework would add around the model calls


def _agent_span(tracer: Tracer, provider: str, model: str) -> Any:
    return tracer.start_as_current_span(
        f"invoke_agent {AGENT_NAME}",
        kind=SpanKind.INTERNAL,
        attributes={
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": AGENT_NAME,
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": model,
            "gen_ai.conversation.id": str(uuid.uuid4()),
        },
    )


def _tool_span(tracer: Tracer, name: str, call_id: str) -> Any:
    return tracer.start_as_current_span(
        f"execute_tool {name}",
        kind=SpanKind.INTERNAL,
        attributes={
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": name,
            "gen_ai.tool.call.id": call_id,
            "gen_ai.tool.type": "function",
        },
    )


OPENAI_SCENARIOS: dict[str, Scenario] = {
    "chat": openai_chat,
    "chat_stream": openai_chat_stream,
    "embeddings": openai_embeddings,
    "tool_round_trip": openai_tool_round_trip,
    "cached_tokens": openai_cached_tokens,
    "reasoning": openai_reasoning,
    "error_429": openai_error_429,
    "error_500": openai_error_500,
    "agent": openai_agent,
}
ANTHROPIC_SCENARIOS: dict[str, Scenario] = {
    "messages": anthropic_messages,
    "stream": anthropic_stream,
    "cache_usage": anthropic_cache_usage,
    "tool_use": anthropic_tool_use,
    "error_429": anthropic_error_429,
    "error_529": anthropic_error_529,
    "agent": anthropic_agent,
}
SCENARIOS: dict[str, dict[str, Scenario]] = {
    "openai": OPENAI_SCENARIOS,
    "anthropic": ANTHROPIC_SCENARIOS,
}
