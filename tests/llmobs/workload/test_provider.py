"""The official SDKs against the fake provider over real HTTP."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
from aiohttp import web

from llmobs.workload.provider import ERROR_HEADER, REPLY_TEXT, make_app, text_tokens
from llmobs.workload.provider_openai import REASONING_TOKENS

LONG_PROMPT = "Cache me if you can. " * 300  # 6300 characters, 1575 tokens
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city", "days"],
}
OPENAI_TOOLS: Any = [
    {"type": "function", "function": {"name": "forecast", "parameters": WEATHER_SCHEMA}}
]
ANTHROPIC_TOOLS: Any = [{"name": "forecast", "input_schema": WEATHER_SCHEMA}]


@pytest.fixture
async def provider_url() -> AsyncIterator[str]:
    runner = web.AppRunner(make_app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}"
    await runner.cleanup()


@pytest.fixture
def oai(provider_url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=f"{provider_url}/v1", api_key="test", max_retries=0
    )


@pytest.fixture
def claude(provider_url: str) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(
        base_url=provider_url, api_key="test", max_retries=0, open_telemetry=False
    )


async def test_chat_reports_dated_model_and_predictable_usage(
    oai: openai.AsyncOpenAI,
) -> None:
    response = await oai.chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "system", "content": "You answer briefly."},
            {"role": "user", "content": "What is OpenTelemetry?"},
        ],
    )

    assert response.model == "gpt-4o-mini-2024-07-18"
    assert response.choices[0].message.content == REPLY_TEXT
    assert response.choices[0].finish_reason == "stop"
    assert response.usage is not None
    assert response.usage.prompt_tokens == 5 + 6
    assert response.usage.completion_tokens == text_tokens(REPLY_TEXT)
    assert response.usage.total_tokens == 11 + text_tokens(REPLY_TEXT)
    assert response.usage.prompt_tokens_details is not None
    assert response.usage.prompt_tokens_details.cached_tokens == 0


async def test_max_tokens_cuts_the_reply_with_finish_reason_length(
    oai: openai.AsyncOpenAI,
) -> None:
    response = await oai.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "Hi"}],
        max_completion_tokens=3,
    )

    assert response.model == "gpt-4o-2024-08-06"
    assert response.choices[0].finish_reason == "length"
    assert response.usage is not None
    assert response.usage.completion_tokens == 3


async def test_stream_ends_with_a_usage_chunk(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Stream please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == REPLY_TEXT
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == text_tokens("Stream please")
    assert chunks[-1].usage.completion_tokens == text_tokens(REPLY_TEXT)
    assert chunks[-2].choices[0].finish_reason == "stop"


async def test_stream_without_include_usage_has_no_usage_chunk(
    oai: openai.AsyncOpenAI,
) -> None:
    stream = await oai.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Stream please"}],
        stream=True,
    )
    chunks = [chunk async for chunk in stream]

    assert chunks
    assert all(c.usage is None and c.choices for c in chunks)


async def test_tool_call_round_trip(oai: openai.AsyncOpenAI) -> None:
    messages: list[Any] = [{"role": "user", "content": "Weather in Oslo?"}]
    first = await oai.chat.completions.create(
        model="gpt-4o-mini", messages=messages, tools=OPENAI_TOOLS
    )
    calls = first.choices[0].message.tool_calls or []

    assert first.choices[0].finish_reason == "tool_calls"
    assert len(calls) == 1
    call: Any = calls[0]
    assert call.function.name == "forecast"
    assert json.loads(call.function.arguments) == {"city": "Paris", "days": 3}

    messages.append(first.choices[0].message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "sunny"})
    second = await oai.chat.completions.create(
        model="gpt-4o-mini", messages=messages, tools=OPENAI_TOOLS
    )

    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == REPLY_TEXT


async def test_streamed_tool_call_arguments_reassemble(
    oai: openai.AsyncOpenAI,
) -> None:
    stream = await oai.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
        tools=OPENAI_TOOLS,
        stream=True,
    )
    arguments = ""
    names = []
    async for chunk in stream:
        for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            if call.function and call.function.name:
                names.append(call.function.name)
            if call.function and call.function.arguments:
                arguments += call.function.arguments

    assert names == ["forecast"]
    assert json.loads(arguments) == {"city": "Paris", "days": 3}


async def test_embeddings_in_base64_and_float_agree(oai: openai.AsyncOpenAI) -> None:
    packed = await oai.embeddings.create(
        model="text-embedding-3-small", input=["first text", "second"]
    )
    floats = await oai.embeddings.create(
        model="text-embedding-3-small",
        input=["first text", "second"],
        encoding_format="float",
        dimensions=64,
    )

    assert packed.model == "text-embedding-3-small"
    assert [len(d.embedding) for d in packed.data] == [1536, 1536]
    assert [len(d.embedding) for d in floats.data] == [64, 64]
    assert packed.data[0].embedding[:64] == pytest.approx(floats.data[0].embedding)
    assert packed.data[0].embedding != packed.data[1].embedding
    assert packed.usage.prompt_tokens == text_tokens("first text") + text_tokens(
        "second"
    )


async def test_long_prompt_reports_cached_tokens(oai: openai.AsyncOpenAI) -> None:
    response = await oai.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": LONG_PROMPT}]
    )

    assert response.usage is not None
    assert response.usage.prompt_tokens == 1575
    assert response.usage.prompt_tokens_details is not None
    assert response.usage.prompt_tokens_details.cached_tokens == 1536


async def test_reasoning_model_reports_reasoning_tokens(
    oai: openai.AsyncOpenAI,
) -> None:
    response = await oai.chat.completions.create(
        model="o4-mini", messages=[{"role": "user", "content": "Think"}]
    )

    assert response.usage is not None
    details = response.usage.completion_tokens_details
    assert details is not None
    assert details.reasoning_tokens == REASONING_TOKENS
    assert (
        response.usage.completion_tokens == text_tokens(REPLY_TEXT) + REASONING_TOKENS
    )


async def test_429_raises_rate_limit_error_with_retry_after(
    oai: openai.AsyncOpenAI,
) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        await oai.chat.completions.create(
            model="gpt-4o-mini-error-429",
            messages=[{"role": "user", "content": "Hi"}],
        )

    assert caught.value.response.headers["retry-after"] == "1"
    assert caught.value.code == "rate_limit_exceeded"


async def test_error_header_selects_500(oai: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.InternalServerError):
        await oai.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "Hi"}],
            extra_headers={ERROR_HEADER: "500"},
        )


async def test_request_without_a_key_is_401(provider_url: str) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{provider_url}/v1/chat/completions",
            json={
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": "x"}],
            },
        ) as response,
    ):
        body = await response.json()

    assert response.status == 401
    assert body["error"]["code"] == "invalid_api_key"


async def test_anthropic_message_usage(claude: anthropic.AsyncAnthropic) -> None:
    message = await claude.messages.create(
        model="claude-3-5-haiku-latest",
        max_tokens=100,
        system="Be brief.",
        messages=[{"role": "user", "content": "Hello there"}],
    )

    assert message.model == "claude-3-5-haiku-20241022"
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == text_tokens("Be brief.") + text_tokens(
        "Hello there"
    )
    assert message.usage.output_tokens == text_tokens(REPLY_TEXT)
    assert message.usage.cache_read_input_tokens == 0


async def test_anthropic_stream_sends_the_real_event_sequence(
    claude: anthropic.AsyncAnthropic,
) -> None:
    stream = await claude.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=100,
        messages=[{"role": "user", "content": "Hello"}],
        stream=True,
    )
    events = [event async for event in stream]
    kinds = [event.type for event in events]

    assert kinds[0] == "message_start"
    assert kinds[1] == "content_block_start"
    assert set(kinds[2:-3]) == {"content_block_delta"}
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    delta: Any = events[-2]
    assert delta.usage.output_tokens == text_tokens(REPLY_TEXT)
    assert delta.delta.stop_reason == "end_turn"


async def test_anthropic_cache_is_written_then_read(
    claude: anthropic.AsyncAnthropic,
) -> None:
    system: Any = [
        {"type": "text", "text": LONG_PROMPT, "cache_control": {"type": "ephemeral"}}
    ]
    first = await claude.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=100,
        system=system,
        messages=[{"role": "user", "content": "One"}],
    )
    async with claude.messages.stream(
        model="claude-sonnet-4-5",
        max_tokens=100,
        system=system,
        messages=[{"role": "user", "content": "Two"}],
    ) as stream:
        second = await stream.get_final_message()

    assert first.usage.cache_creation_input_tokens == 1575
    assert first.usage.cache_read_input_tokens == 0
    assert first.usage.input_tokens == text_tokens("One")
    assert second.usage.cache_creation_input_tokens == 0
    assert second.usage.cache_read_input_tokens == 1575
    assert second.usage.input_tokens == text_tokens("Two")


async def test_anthropic_tool_use(claude: anthropic.AsyncAnthropic) -> None:
    message = await claude.messages.create(
        model="claude-3-5-haiku-latest",
        max_tokens=100,
        tools=ANTHROPIC_TOOLS,
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
    )
    uses: list[Any] = [b for b in message.content if b.type == "tool_use"]

    assert message.stop_reason == "tool_use"
    assert len(uses) == 1
    assert uses[0].name == "forecast"
    assert uses[0].input == {"city": "Paris", "days": 3}


async def test_anthropic_errors(claude: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.RateLimitError):
        await claude.messages.create(
            model="claude-3-5-haiku-latest",
            max_tokens=10,
            messages=[{"role": "user", "content": "Hi"}],
            extra_headers={ERROR_HEADER: "429"},
        )
    with pytest.raises(anthropic.OverloadedError):
        await claude.messages.create(
            model="claude-error-529",
            max_tokens=10,
            messages=[{"role": "user", "content": "Hi"}],
        )


async def test_prompt_bodies_are_never_logged(
    oai: openai.AsyncOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "my-private-prompt-7f3a"
    with caplog.at_level(logging.DEBUG, logger="llmobs.workload"):
        await oai.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": secret}]
        )

    assert "/v1/chat/completions" in caplog.text
    assert secret not in caplog.text
