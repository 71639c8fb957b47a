"""The Anthropic half of the fake provider: POST /v1/messages.

Plain and streamed (the real event sequence: message_start, content_block_*,
message_delta with usage, message_stop), tool_use blocks, and prompt caching:
the prefix up to the last ``cache_control`` block is written on first sight
and read afterwards, and ``input_tokens`` excludes both, as the real API does.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from aiohttp import web

from llmobs.workload.provider import (
    RETRY_AFTER_S,
    PromptCache,
    chunks_of,
    content_text,
    dated_model,
    new_id,
    read_json,
    reply_for,
    requested_error,
    sse_event,
    text_tokens,
    tool_arguments,
)

CACHE_MIN_TOKENS = 1024
TOOL_PREAMBLE = "Let me call a tool for that."
CACHE_KEY = web.AppKey("prompt_cache", PromptCache)

_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "The request is not valid."),
    401: ("authentication_error", "invalid x-api-key"),
    429: ("rate_limit_error", "Number of requests has exceeded your rate limit."),
    500: ("api_error", "Internal server error"),
    503: ("api_error", "Service unavailable"),
    529: ("overloaded_error", "Overloaded"),
}


def add_routes(app: web.Application) -> None:
    app[CACHE_KEY] = PromptCache()
    app.router.add_post("/v1/messages", messages)


def error_response(status: int, message: str | None = None) -> web.Response:
    """An error in Anthropic's JSON shape."""
    kind, default_message = _ERRORS.get(status, _ERRORS[500])
    request_id = new_id("req_")
    body = {
        "type": "error",
        "error": {"type": kind, "message": message or default_message},
        "request_id": request_id,
    }
    headers = {"request-id": request_id}
    if status in (429, 529):
        headers["retry-after"] = str(RETRY_AFTER_S)
    return web.json_response(body, status=status, headers=headers)


def prompt_blocks(body: dict[str, Any]) -> list[tuple[str, bool]]:
    """System then message blocks in order: (text, carries cache_control)."""
    blocks: list[tuple[str, bool]] = []
    contents = [body.get("system")]
    contents += [
        m.get("content") for m in body.get("messages") or [] if isinstance(m, dict)
    ]
    for content in contents:
        if content is None:
            continue
        if not isinstance(content, list):
            blocks.append((content_text(content), False))
            continue
        for block in content:
            marked = isinstance(block, dict) and bool(block.get("cache_control"))
            blocks.append((content_text(block), marked))
    return blocks


def input_usage(body: dict[str, Any], cache: PromptCache) -> dict[str, int]:
    """Input tokens split into uncached, cache-written and cache-read."""
    blocks = prompt_blocks(body)
    total = sum(text_tokens(text) for text, _ in blocks)
    marks = [i for i, (_, marked) in enumerate(blocks) if marked]
    written = read = 0
    if marks:
        prefix = [text for text, _ in blocks[: marks[-1] + 1]]
        prefix_tokens = sum(text_tokens(text) for text in prefix)
        if prefix_tokens >= CACHE_MIN_TOKENS:
            digest = hashlib.sha256(
                json.dumps([body.get("model"), prefix]).encode()
            ).hexdigest()
            if cache.hit(digest):
                read = prefix_tokens
            else:
                written = prefix_tokens
    return {
        "input_tokens": total - written - read,
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": read,
    }


def chosen_tool(body: dict[str, Any]) -> tuple[dict[str, Any] | None, bool]:
    """The tool the model calls now, and whether the choice was forced."""
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict)]
    choice = body.get("tool_choice") or {"type": "auto"}
    if not tools or choice.get("type") == "none":
        return None, False
    history = body.get("messages") or []
    last = (
        history[-1].get("content")
        if history and isinstance(history[-1], dict)
        else None
    )
    if isinstance(last, list) and any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in last
    ):
        return None, False
    if choice.get("type") == "tool":
        for tool in tools:
            if tool.get("name") == choice.get("name"):
                return tool, True
    return tools[0], choice.get("type") in ("any", "tool")


async def messages(request: web.Request) -> web.StreamResponse:
    """POST /v1/messages, plain or streamed."""
    if not (
        request.headers.get("x-api-key")
        or request.headers.get("Authorization", "").startswith("Bearer ")
    ):
        return error_response(401)
    body = await read_json(request)
    model = str(body.get("model") or "")
    if not model or not body.get("messages") or not body.get("max_tokens"):
        return error_response(400, "model, messages and max_tokens are required")
    status = requested_error(request, model)
    if status is not None:
        return error_response(status)

    tool, forced = chosen_tool(body)
    content: list[dict[str, Any]] = []
    if tool is not None:
        if not forced:
            content.append({"type": "text", "text": TOOL_PREAMBLE})
        arguments = tool_arguments(tool.get("input_schema"))
        content.append(
            {
                "type": "tool_use",
                "id": new_id("toolu_"),
                "name": tool.get("name", "tool"),
                "input": arguments,
            }
        )
        stop_reason = "tool_use"
    else:
        text, cut = reply_for(int(body["max_tokens"]))
        content.append({"type": "text", "text": text})
        stop_reason = "max_tokens" if cut else "end_turn"

    output_tokens = sum(text_tokens(content_text(block)) for block in content)
    counts = input_usage(body, request.app[CACHE_KEY])
    usage = {
        **counts,
        "cache_creation": {
            "ephemeral_5m_input_tokens": counts["cache_creation_input_tokens"],
            "ephemeral_1h_input_tokens": 0,
        },
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }
    message = {
        "id": new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": dated_model(model, anthropic=True),
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage,
    }
    if body.get("stream"):
        return await _stream_message(request, message)
    return web.json_response(message, headers={"request-id": new_id("req_")})


async def _stream_message(
    request: web.Request, message: dict[str, Any]
) -> web.StreamResponse:
    """Send ``message`` as the event sequence the Messages API streams."""
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "request-id": new_id("req_"),
        }
    )
    await response.prepare(request)

    usage = message["usage"]
    start_usage = {**usage, "output_tokens": 1}
    start = {**message, "content": [], "stop_reason": None, "usage": start_usage}
    await _send(response, "message_start", {"message": start})
    await _send(response, "ping", {})
    for index, block in enumerate(message["content"]):
        await _stream_block(response, index, block)
    final_usage = {k: v for k, v in usage.items() if k not in ("cache_creation",)}
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": None}
    await _send(response, "message_delta", {"delta": delta, "usage": final_usage})
    await _send(response, "message_stop", {})
    await response.write_eof()
    return response


async def _stream_block(
    response: web.StreamResponse, index: int, block: dict[str, Any]
) -> None:
    if block["type"] == "tool_use":
        opening = {**block, "input": {}}
        arguments = json.dumps(block["input"])
        step = max(1, math.ceil(len(arguments) / 3))
        deltas = [
            {"type": "input_json_delta", "partial_json": arguments[i : i + step]}
            for i in range(0, len(arguments), step)
        ]
    else:
        opening = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": t} for t in chunks_of(block["text"])]
    await _send(
        response, "content_block_start", {"index": index, "content_block": opening}
    )
    for delta in deltas:
        await _send(response, "content_block_delta", {"index": index, "delta": delta})
    await _send(response, "content_block_stop", {"index": index})


async def _send(response: web.StreamResponse, event: str, data: dict[str, Any]) -> None:
    await response.write(sse_event({"type": event, **data}, event=event))
