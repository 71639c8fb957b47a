"""The workload end to end: real SDKs and instrumentations, a real OTLP receiver.

Each test runs the runner processes against the in-process fake provider and
an in-test OTLP receiver (aiohttp for OTLP/HTTP, grpc.aio for OTLP/gRPC) that
decodes every request as an ExportTraceServiceRequest.
"""

from __future__ import annotations

import asyncio
import gzip
import threading
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from llmobs.workload import cli
from llmobs.workload.cli import WorkloadSettings, run_workload
from llmobs.workload.provider import REPLY_TEXT, text_tokens
from llmobs.workload.provider_openai import REASONING_TOKENS
from llmobs.workload.scenarios import AGENT_NAME, LONG_INSTRUCTIONS

API_KEY = "test-key-123"
TENANT = "acme"
PREFIX = "wltest"
AGENT_SPAN = f"invoke_agent {AGENT_NAME}"


@dataclass
class Received:
    """What the receiver got: one entry per export request."""

    requests: list[ExportTraceServiceRequest] = field(default_factory=list)
    authorizations: list[str] = field(default_factory=list)
    status: int = 200

    def spans_by_service(self) -> dict[str, list[tuple[Span, dict[str, Any]]]]:
        """service.name -> (span, resource attributes) for every span."""
        out: dict[str, list[tuple[Span, dict[str, Any]]]] = defaultdict(list)
        for request in self.requests:
            for resource_spans in request.resource_spans:
                resource = attributes(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        out[resource["service.name"]].append((span, resource))
        return out


def value(any_value: AnyValue) -> Any:
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [value(v) for v in any_value.array_value.values]
    return getattr(any_value, kind) if kind else None


def attributes(key_values: Any) -> dict[str, Any]:
    return {kv.key: value(kv.value) for kv in key_values}


@pytest.fixture
async def http_receiver() -> AsyncIterator[tuple[str, Received]]:
    received = Received()

    async def export(request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        received.authorizations.append(request.headers.get("Authorization", ""))
        if received.status != 200:
            return web.Response(status=received.status, text="rejected")
        message = ExportTraceServiceRequest()
        message.ParseFromString(body)
        received.requests.append(message)
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )

    app = web.Application()
    app.router.add_post("/v1/traces", export)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}", received
    await runner.cleanup()


class TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, received: Received) -> None:
        self.received = received

    async def Export(
        self, request: ExportTraceServiceRequest, context: Any
    ) -> ExportTraceServiceResponse:
        metadata = dict(context.invocation_metadata())
        self.received.authorizations.append(metadata.get("authorization", ""))
        self.received.requests.append(request)
        return ExportTraceServiceResponse()


@pytest.fixture
async def grpc_receiver() -> AsyncIterator[tuple[str, Received]]:
    received = Received()
    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(
        TraceService(received), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"http://127.0.0.1:{port}", received
    await server.stop(grace=None)


def settings(endpoint: str, **overrides: Any) -> WorkloadSettings:
    values: dict[str, Any] = {
        "otlp_endpoint": endpoint,
        "api_key": API_KEY,
        "tenant": TENANT,
        "service_name": PREFIX,
        "runner_timeout_s": 90.0,
        **overrides,
    }
    chosen = WorkloadSettings(**values)
    chosen.validate()
    return chosen


def errors(spans: list[Span]) -> list[Span]:
    return [s for s in spans if s.status.code == Status.STATUS_CODE_ERROR]


def assert_agent_trace(spans: list[Span], min_model_calls: int) -> None:
    """One agent span whose trace holds its model calls and a tool call."""
    agents = [s for s in spans if s.name == AGENT_SPAN]
    assert len(agents) == 1
    agent = agents[0]
    assert attributes(agent.attributes)["gen_ai.operation.name"] == "invoke_agent"
    assert attributes(agent.attributes)["gen_ai.agent.name"] == AGENT_NAME
    assert agent.parent_span_id == b""

    children = [s for s in spans if s.trace_id == agent.trace_id and s is not agent]
    assert all(child.parent_span_id == agent.span_id for child in children)
    tools = [s for s in children if s.name == "execute_tool get_weather"]
    assert len(tools) == 1
    assert attributes(tools[0].attributes)["gen_ai.tool.name"] == "get_weather"
    assert len(children) - len(tools) >= min_model_calls


async def test_all_instrumentations_export_genai_spans(
    http_receiver: tuple[str, Received],
) -> None:
    endpoint, received = http_receiver

    results = await run_workload(settings(endpoint))

    assert [r.instrumentation for r in results] == list(cli.INSTRUMENTATIONS)
    assert all(r.ok for r in results), results
    assert set(received.authorizations) == {f"Bearer {API_KEY}"}
    by_service = received.spans_by_service()
    for result in results:
        rows = by_service[result.service_name]
        assert result.spans_exported == len(rows) > 0
        assert result.traces_exported == len({span.trace_id for span, _ in rows})
        for _, resource in rows:
            assert resource["deployment.environment"] == "demo"
            assert resource["tenant.id"] == TENANT

    check_openai_v2([span for span, _ in by_service[f"{PREFIX}-openai-v2"]])
    check_openinference([span for span, _ in by_service[f"{PREFIX}-openinference"]])
    check_openllmetry(
        [span for span, _ in by_service[f"{PREFIX}-openllmetry-anthropic"]]
    )


def check_openai_v2(spans: list[Span]) -> None:
    chats = [attributes(s.attributes) for s in spans if s.name == "chat gpt-4o-mini"]
    plain = [a for a in chats if a.get("gen_ai.request.temperature") == 0.2]
    assert len(plain) == 1
    assert plain[0]["gen_ai.provider.name"] == "openai"
    assert plain[0]["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    assert plain[0]["gen_ai.usage.input_tokens"] == text_tokens(
        "You answer briefly."
    ) + text_tokens("What is OpenTelemetry?")
    assert plain[0]["gen_ai.usage.output_tokens"] == text_tokens(REPLY_TEXT)

    embeddings = [
        attributes(s.attributes) for s in spans if s.name.startswith("embeddings ")
    ]
    assert len(embeddings) == 1
    assert embeddings[0]["gen_ai.usage.input_tokens"] == text_tokens(
        "observability for LLMs"
    ) + text_tokens("token usage")

    failed = errors(spans)
    assert len(failed) == 2
    assert all("error.type" in attributes(s.attributes) for s in failed)
    assert_agent_trace(spans, min_model_calls=3)


def check_openinference(spans: list[Span]) -> None:
    llm = [attributes(s.attributes) for s in spans]
    llm = [a for a in llm if a.get("openinference.span.kind") == "LLM"]
    assert {a.get("llm.model_name") for a in llm} >= {
        "gpt-4o-mini-2024-07-18",
        "o4-mini-2025-04-16",
    }
    prompt = text_tokens(LONG_INSTRUCTIONS) + text_tokens("Plan a day in Lisbon.")
    cached = [a for a in llm if a.get("llm.token_count.prompt") == prompt]
    assert len(cached) == 1
    assert cached[0]["llm.token_count.prompt_details.cache_read"] == prompt // 128 * 128
    reasoning = [a for a in llm if a.get("llm.model_name") == "o4-mini-2025-04-16"]
    assert reasoning[0]["llm.token_count.completion_details.reasoning"] == (
        REASONING_TOKENS
    )

    failed = errors(spans)
    assert len(failed) == 2
    assert {s.status.message.split(":")[0] for s in failed} == {
        "RateLimitError",
        "InternalServerError",
    }
    assert_agent_trace(spans, min_model_calls=3)


def check_openllmetry(spans: list[Span]) -> None:
    chats = [attributes(s.attributes) for s in spans if s.name == "anthropic.chat"]
    assert chats
    assert all(a["gen_ai.provider.name"] == "anthropic" for a in chats)
    done = [a for a in chats if "gen_ai.response.model" in a]
    assert {a["gen_ai.response.model"] for a in done} >= {
        "claude-3-5-haiku-20241022",
        "claude-sonnet-4-5-20250929",
    }
    assert all(a["gen_ai.usage.output_tokens"] > 0 for a in done)
    writes = [a for a in done if a["gen_ai.usage.cache_creation.input_tokens"] > 0]
    reads = [a for a in done if a["gen_ai.usage.cache_read.input_tokens"] > 0]
    assert len(writes) == len(reads) == 1
    assert (
        writes[0]["gen_ai.usage.cache_creation.input_tokens"]
        == reads[0]["gen_ai.usage.cache_read.input_tokens"]
    )

    failed = errors(spans)
    assert {attributes(s.attributes)["error.type"] for s in failed} == {
        "RateLimitError",
        "OverloadedError",
    }
    assert_agent_trace(spans, min_model_calls=2)


async def test_grpc_export_carries_the_key_and_every_span(
    grpc_receiver: tuple[str, Received],
) -> None:
    endpoint, received = grpc_receiver

    results = await run_workload(
        settings(endpoint, protocol="grpc", instrumentations=("openllmetry-anthropic",))
    )

    assert len(results) == 1
    assert results[0].ok, results
    assert set(received.authorizations) == {f"Bearer {API_KEY}"}
    spans = received.spans_by_service()[f"{PREFIX}-openllmetry-anthropic"]
    assert results[0].spans_exported == len(spans) > 0


async def test_rejected_exports_are_counted_as_failures(
    http_receiver: tuple[str, Received],
) -> None:
    endpoint, received = http_receiver
    received.status = 400

    results = await run_workload(
        settings(endpoint, instrumentations=("openllmetry-anthropic",))
    )

    assert not results[0].ok
    assert results[0].export_failures > 0
    assert results[0].spans_exported == 0
    assert results[0].spans_failed > 0


@pytest.fixture
def threaded_receiver() -> Iterator[str]:
    """An OTLP/HTTP receiver on its own loop, for the synchronous CLI entry."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, Any] = {}

    async def start() -> None:
        async def export(request: web.Request) -> web.Response:
            await request.read()
            return web.Response(
                body=ExportTraceServiceResponse().SerializeToString(),
                content_type="application/x-protobuf",
            )

        app = web.Application()
        app.router.add_post("/v1/traces", export)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        holder["runner"] = runner
        holder["url"] = f"http://127.0.0.1:{runner.addresses[0][1]}"
        ready.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop)
    ready.wait(10)
    yield holder["url"]
    asyncio.run_coroutine_threadsafe(holder["runner"].cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def test_cli_prints_a_summary_and_exits_zero(
    threaded_receiver: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(
        [
            "--otlp-endpoint", threaded_receiver,
            "--instrumentations", "openllmetry-anthropic",
            "--rounds", "2",
            "--service-name", "clitest",
        ]
    )  # fmt: skip

    code = cli.run(args)

    out = capsys.readouterr().out
    assert code == 0
    assert "clitest-openllmetry-anthropic" in out
    assert "export failures" in out
