"""The OpenAI half of the fake provider: chat completions and embeddings.

Responses follow the shapes of the real API closely enough for the official
SDK and its instrumentations: usage with cached and reasoning token details,
tool calls, SSE streaming with an optional final usage chunk, and error
bodies with ``Retry-After`` on 429.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

from aiohttp import web

from llmobs.workload.provider import (
    RETRY_AFTER_S,
    chunks_of,
    content_text,
    dated_model,
    embedding,
    new_id,
    pack_base64,
    read_json,
    reply_for,
    requested_error,
    sse_event,
    text_tokens,
    tool_arguments,
)

# OpenAI caches prompts of at least 1024 tokens, in steps of 128 tokens.
CACHE_MIN_TOKENS = 1024
CACHE_STEP_TOKENS = 128
REASONING_TOKENS = 64
REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")
FINGERPRINT = "fp_fake0001"

_ERRORS: dict[int, tuple[str, str, str | None]] = {
    400: ("The request is not valid.", "invalid_request_error", None),
    401: ("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
    429: (
        "Rate limit reached for requests per min (RPM). Please try again in 1s.",
        "requests",
        "rate_limit_exceeded",
    ),
    500: (
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        None,
    ),
    503: (
        "The engine is currently overloaded, please try again later.",
        "server_error",
        None,
    ),
}


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/embeddings", embeddings)


def error_response(status: int, message: str | None = None) -> web.Response:
    """An error in OpenAI's JSON shape, with the headers clients act on."""
    default_message, kind, code = _ERRORS.get(status, _ERRORS[500])
    body = {
        "error": {
            "message": message or default_message,
            "type": kind,
            "param": None,
            "code": code,
        }
    }
    headers = {"x-request-id": new_id("req_")}
    if status in (429, 503):
        headers["retry-after"] = str(RETRY_AFTER_S)
        headers["retry-after-ms"] = str(RETRY_AFTER_S * 1000)
    return web.json_response(body, status=status, headers=headers)


def prompt_tokens(messages: list[Any]) -> int:
    """Tokens of every message's text, tool call arguments included."""
    total = 0
    for message in messages:
        if not isinstance(message, dict):
            continue
        total += text_tokens(content_text(message.get("content")))
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            total += text_tokens(function.get("arguments") or "")
    return total


def usage(prompt: int, completion: int, model: str) -> dict[str, Any]:
    """Usage with the cached and reasoning details the real API reports."""
    cached = 0
    if prompt >= CACHE_MIN_TOKENS:
        cached = prompt // CACHE_STEP_TOKENS * CACHE_STEP_TOKENS
    reasoning = REASONING_TOKENS if model.startswith(REASONING_PREFIXES) else 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion + reasoning,
        "total_tokens": prompt + completion + reasoning,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def chosen_tool(body: dict[str, Any]) -> dict[str, Any] | None:
    """The function the model calls now, or None when it should answer."""
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict)]
    choice = body.get("tool_choice", "auto")
    messages = body.get("messages") or []
    if not tools or choice == "none":
        return None
    if (
        messages
        and isinstance(messages[-1], dict)
        and messages[-1].get("role") == "tool"
    ):
        return None
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        for tool in tools:
            if (tool.get("function") or {}).get("name") == name:
                return tool
    return tools[0]


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """POST /v1/chat/completions, plain or streamed."""
    if not request.headers.get("Authorization", "").startswith("Bearer "):
        return error_response(401)
    body = await read_json(request)
    model = str(body.get("model") or "")
    messages = body.get("messages")
    if not model or not isinstance(messages, list) or not messages:
        return error_response(400, "model and a non-empty messages list are required")
    status = requested_error(request, model)
    if status is not None:
        return error_response(status)

    tool = chosen_tool(body)
    message: dict[str, Any] = {"role": "assistant", "refusal": None, "annotations": []}
    if tool is not None:
        function = tool.get("function") or {}
        arguments = json.dumps(tool_arguments(function.get("parameters")))
        call: dict[str, Any] = {
            "id": new_id("call_"),
            "type": "function",
            "function": {"name": function.get("name", "tool"), "arguments": arguments},
        }
        message.update(content=None, tool_calls=[call])
        completion = text_tokens(call["function"]["name"] + arguments)
        finish_reason = "tool_calls"
    else:
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        text, cut = reply_for(int(limit) if limit else None)
        message["content"] = text
        completion = text_tokens(text)
        finish_reason = "length" if cut else "stop"

    head = {
        "id": new_id("chatcmpl-"),
        "created": int(time.time()),
        "model": dated_model(model, anthropic=False),
        "system_fingerprint": FINGERPRINT,
        "service_tier": "default",
    }
    counts = usage(prompt_tokens(messages), completion, model)
    if body.get("stream"):
        return await _stream_chat(request, body, head, message, finish_reason, counts)
    choice = {
        "index": 0,
        "message": message,
        "logprobs": None,
        "finish_reason": finish_reason,
    }
    return web.json_response(
        {**head, "object": "chat.completion", "choices": [choice], "usage": counts},
        headers={"x-request-id": new_id("req_")},
    )


async def _stream_chat(
    request: web.Request,
    body: dict[str, Any],
    head: dict[str, Any],
    message: dict[str, Any],
    finish_reason: str,
    counts: dict[str, Any],
) -> web.StreamResponse:
    """Stream the message as chat.completion.chunk events, then [DONE]."""
    options = body.get("stream_options") or {}
    include_usage = bool(options.get("include_usage"))
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "x-request-id": new_id("req_"),
        }
    )
    await response.prepare(request)

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {
            **head,
            "object": "chat.completion.chunk",
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            ],
        }
        if include_usage:
            data["usage"] = None
        return data

    await response.write(sse_event(chunk({"role": "assistant", "content": ""})))
    for delta in _deltas(message):
        await response.write(sse_event(chunk(delta)))
    await response.write(sse_event(chunk({}, finish_reason)))
    if include_usage:
        final = {**head, "object": "chat.completion.chunk", "choices": []}
        await response.write(sse_event({**final, "usage": counts}))
    await response.write(sse_event("[DONE]"))
    await response.write_eof()
    return response


def _deltas(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The deltas a streamed message arrives in: words, or tool call parts."""
    calls = message.get("tool_calls")
    if not calls:
        return [{"content": piece} for piece in chunks_of(message["content"])]
    call = calls[0]
    arguments = call["function"]["arguments"]
    first = {
        "index": 0,
        "id": call["id"],
        "type": "function",
        "function": {"name": call["function"]["name"], "arguments": ""},
    }
    deltas = [{"tool_calls": [first]}]
    step = max(1, math.ceil(len(arguments) / 3))
    for start in range(0, len(arguments), step):
        piece = {"index": 0, "function": {"arguments": arguments[start : start + step]}}
        deltas.append({"tool_calls": [piece]})
    return deltas


async def embeddings(request: web.Request) -> web.StreamResponse:
    """POST /v1/embeddings; base64 or float vectors, as the request asks."""
    if not request.headers.get("Authorization", "").startswith("Bearer "):
        return error_response(401)
    body = await read_json(request)
    model = str(body.get("model") or "")
    inputs = body.get("input")
    if not model or inputs in (None, "", []):
        return error_response(400, "model and input are required")
    status = requested_error(request, model)
    if status is not None:
        return error_response(status)

    if isinstance(inputs, str) or (
        isinstance(inputs, list) and inputs and isinstance(inputs[0], int)
    ):
        inputs = [inputs]
    default_dimensions = 3072 if "large" in model else 1536
    dimensions = int(body.get("dimensions") or default_dimensions)
    base64_wanted = body.get("encoding_format") == "base64"
    data = []
    tokens = 0
    for index, item in enumerate(inputs):
        text = item if isinstance(item, str) else " ".join(str(t) for t in item)
        tokens += text_tokens(item) if isinstance(item, str) else len(item)
        vector = embedding(text, dimensions)
        encoded: Any = pack_base64(vector) if base64_wanted else vector
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    return web.json_response(
        {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        },
        headers={"x-request-id": new_id("req_")},
    )
