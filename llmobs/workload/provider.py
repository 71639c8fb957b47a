"""A fake LLM provider: the OpenAI and Anthropic HTTP APIs, deterministic.

The official SDKs talk to it unchanged (``base_url`` pointed here), so real
instrumentations see real wire traffic. Token counts derive from text lengths
(``text_tokens``), response models are dated variants of the requested ones,
and errors are selected by the request: a model name containing
``error-<status>`` (e.g. ``gpt-4o-mini-error-429``) or the header
``X-Fake-Error: <status>``. Prompt bodies are never logged.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

ERROR_HEADER = "X-Fake-Error"
ERROR_STATUSES = (400, 401, 429, 500, 503, 529)
RETRY_AFTER_S = 1
REPLY_TEXT = (
    "This is a deterministic reply from the fake provider. "
    "It answers every prompt with the same few sentences, "
    "so that token counts are easy to predict."
)

# Aliases the real APIs resolve to a dated snapshot in the response `model`.
DATED_MODELS = {
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-4o": "gpt-4o-2024-08-06",
    "gpt-4.1": "gpt-4.1-2025-04-14",
    "gpt-4.1-mini": "gpt-4.1-mini-2025-04-14",
    "gpt-4.1-nano": "gpt-4.1-nano-2025-04-14",
    "o3-mini": "o3-mini-2025-01-31",
    "o4-mini": "o4-mini-2025-04-16",
    "gpt-5-mini": "gpt-5-mini-2025-08-07",
    "claude-3-5-haiku-latest": "claude-3-5-haiku-20241022",
    "claude-3-7-sonnet-latest": "claude-3-7-sonnet-20250219",
    "claude-sonnet-4-0": "claude-sonnet-4-20250514",
    "claude-sonnet-4-5": "claude-sonnet-4-5-20250929",
    "claude-haiku-4-5": "claude-haiku-4-5-20251001",
    "claude-opus-4-1": "claude-opus-4-1-20250805",
}
_DATED = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8})$")
_ERROR_IN_MODEL = re.compile(r"error-(\d{3})")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def text_tokens(text: str) -> int:
    """Tokens of ``text``: one per four characters, rounded up."""
    return math.ceil(len(text) / 4)


def content_text(content: Any) -> str:
    """The text of a message content: a string or a list of typed parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        content = [content]
    if not isinstance(content, list):
        return str(content)
    parts = []
    for part in content:
        if not isinstance(part, dict):
            parts.append(str(part))
        elif isinstance(part.get("text"), str):
            parts.append(part["text"])
        elif part.get("type") == "tool_use":
            parts.append(json.dumps(part.get("input", {}), sort_keys=True))
        elif part.get("type") == "tool_result":
            parts.append(content_text(part.get("content")))
    return "".join(parts)


def dated_model(model: str, *, anthropic: bool) -> str:
    """The snapshot name the real API reports for a requested model."""
    if model in DATED_MODELS:
        return DATED_MODELS[model]
    if _DATED.search(model):
        return model
    return f"{model}-20250101" if anthropic else f"{model}-2025-01-01"


def requested_error(request: web.Request, model: str) -> int | None:
    """The error status this request asks for, if any."""
    header = request.headers.get(ERROR_HEADER, "").strip()
    found = _ERROR_IN_MODEL.search(model)
    raw = header or (found.group(1) if found else "")
    if not raw.isdigit():
        return None
    status = int(raw)
    return status if status in ERROR_STATUSES else None


def reply_for(max_tokens: int | None) -> tuple[str, bool]:
    """The reply text, cut to ``max_tokens``; True when it was cut."""
    if max_tokens is None or text_tokens(REPLY_TEXT) <= max_tokens:
        return REPLY_TEXT, False
    return REPLY_TEXT[: max(1, max_tokens) * 4], True


def chunks_of(text: str) -> list[str]:
    """Split a reply into word-sized stream deltas, keeping the spaces."""
    return re.findall(r"\S+\s*", text) or [text]


def tool_arguments(schema: Any) -> dict[str, Any]:
    """Deterministic arguments that satisfy a tool's JSON schema."""
    if not isinstance(schema, dict):
        return {}
    properties = schema.get("properties") or {}
    required = schema.get("required") or list(properties)
    arguments: dict[str, Any] = {}
    for name in required:
        spec = properties.get(name) or {}
        arguments[name] = _example_value(name, spec)
    return arguments


def _example_value(name: str, spec: dict[str, Any]) -> Any:
    if spec.get("enum"):
        return spec["enum"][0]
    kind = spec.get("type", "string")
    if kind in ("integer", "number"):
        return 3
    if kind == "boolean":
        return True
    if kind == "array":
        return []
    if kind == "object":
        return tool_arguments(spec)
    return "Paris" if "city" in name or "location" in name else f"example {name}"


def embedding(text: str, dimensions: int) -> list[float]:
    """A unit-free deterministic vector seeded by the text."""
    seed = hashlib.sha256(text.encode()).digest()
    values: list[float] = []
    block = seed
    while len(values) < dimensions:
        block = hashlib.sha256(block).digest()
        values.extend((b - 127.5) / 127.5 for b in block)
    return values[:dimensions]


def pack_base64(values: list[float]) -> str:
    """Float32 little-endian base64, the SDK's default embedding encoding."""
    import array

    packed = array.array("f", values)
    return base64.b64encode(packed.tobytes()).decode()


def new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


def sse_event(data: Any, event: str | None = None) -> bytes:
    """One server-sent event; ``data`` is JSON-encoded unless already text."""
    body = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {body}\n\n".encode()


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 the SDKs understand."""
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise web.HTTPBadRequest(text="request body is not JSON") from exc
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="request body must be a JSON object")
    return body


class PromptCache:
    """Which prompt prefixes were seen recently, like a provider's prompt cache.

    The first request with a prefix writes it, later ones within the TTL read
    it, as Anthropic's ephemeral cache does.
    """

    def __init__(self, ttl_s: float = 300.0, max_entries: int = 10_000) -> None:
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._seen: OrderedDict[str, float] = OrderedDict()

    def hit(self, key: str) -> bool:
        """True when ``key`` is cached; records it as cached from now either way."""
        now_s = time.monotonic()
        seen_s = self._seen.pop(key, None)
        self._seen[key] = now_s
        while len(self._seen) > self._max_entries:
            self._seen.popitem(last=False)
        return seen_s is not None and now_s - seen_s < self._ttl_s


@web.middleware
async def log_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One debug line per request: route, status, duration; never the body."""
    started_s = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        log.debug(
            "%s %s -> %d in %.1f ms",
            request.method,
            request.path,
            status,
            (time.perf_counter() - started_s) * 1000,
        )


def make_app() -> web.Application:
    """The fake provider: OpenAI routes under /v1 and Anthropic's /v1/messages."""
    from llmobs.workload import provider_anthropic, provider_openai

    app = web.Application(middlewares=[log_requests])
    provider_openai.add_routes(app)
    provider_anthropic.add_routes(app)
    return app
