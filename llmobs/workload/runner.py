"""One workload process: a real instrumentation, the SDKs, an OTLP exporter.

Run as ``python -m llmobs.workload.runner --instrumentation NAME ...`` by
``llmobs workload``. It installs the tracer provider and the instrumentation,
runs every scenario of the instrumented provider ``rounds`` times, flushes,
and writes a RunResult (JSON) with the spans the exporter confirmed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anthropic
import openai
from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

from llmobs import __version__, logs
from llmobs import settings as config
from llmobs.errors import ConfigError
from llmobs.workload import INSTRUMENTATIONS, RunResult
from llmobs.workload.cli import WorkloadSettings
from llmobs.workload.scenarios import SCENARIOS, Clients

log = logging.getLogger("llmobs.workload.runner")

FAKE_PROVIDER_KEY = "fake-provider-key"
EXPORT_TIMEOUT_S = 10.0
SDK_TIMEOUT_S = 30.0


class CountingExporter(SpanExporter):
    """Wraps an exporter and counts what it reports as exported or failed."""

    def __init__(self, inner: SpanExporter) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self.trace_ids: set[int] = set()
        self.spans_exported = 0
        self.spans_failed = 0
        self.export_failures = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self._inner.export(spans)
        except Exception as exc:  # an exporter bug must not lose the count
            log.warning("exporter raised %s", type(exc).__name__)
            result = SpanExportResult.FAILURE
        with self._lock:
            if result is SpanExportResult.SUCCESS:
                self.spans_exported += len(spans)
                self.trace_ids.update(s.context.trace_id for s in spans if s.context)
            else:
                self.spans_failed += len(spans)
                self.export_failures += 1
                log.warning("export of %d spans failed", len(spans))
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._inner.force_flush(timeout_millis)


def make_exporter(settings: WorkloadSettings) -> SpanExporter:
    """The standard OTLP exporter for the chosen protocol, with the API key."""
    if settings.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        metadata = [("authorization", f"Bearer {settings.api_key}")]
        return GrpcExporter(
            endpoint=settings.endpoint,
            insecure=settings.endpoint.startswith("http://"),
            headers=metadata if settings.api_key else None,
            timeout=EXPORT_TIMEOUT_S,
        )

    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpExporter,
    )

    headers = {"Authorization": f"Bearer {settings.api_key}"}
    return HttpExporter(
        endpoint=settings.endpoint.rstrip("/") + "/v1/traces",
        headers=headers if settings.api_key else None,
        timeout=EXPORT_TIMEOUT_S,
    )


def make_resource(settings: WorkloadSettings, service_name: str) -> Resource:
    attributes: dict[str, Any] = {
        "service.name": service_name,
        "deployment.environment": "demo",
    }
    if settings.tenant:
        attributes["tenant.id"] = settings.tenant
    return Resource.create(attributes)


def instrument(name: str, tracer_provider: TracerProvider) -> BaseInstrumentor:
    """Install the named instrumentation package into this process."""
    instrumentor: BaseInstrumentor
    if name == "openai-v2":
        # Content capture stays at the package default (off) unless the
        # operator sets OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT.
        _alias_httpx()
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

        instrumentor = OpenAIInstrumentor()
    elif name == "openinference":
        from openinference.instrumentation.openai import (
            OpenAIInstrumentor as OpenInferenceInstrumentor,
        )

        instrumentor = OpenInferenceInstrumentor()
    elif name == "openllmetry-anthropic":
        from opentelemetry.instrumentation.anthropic import AnthropicInstrumentor

        instrumentor = AnthropicInstrumentor()
    else:
        raise ConfigError(f"setting instrumentation: unknown {name!r}")
    instrumentor.instrument(tracer_provider=tracer_provider)
    if not instrumentor.is_instrumented_by_opentelemetry:
        raise ConfigError(f"instrumentation {name} refused to instrument the SDK")
    return instrumentor


def _alias_httpx() -> None:
    """Let packages that import ``httpx`` share the ``httpx2`` the SDKs use.

    openai 3 moved to the ``httpx2`` fork; the OpenTelemetry OpenAI
    instrumentation still imports ``httpx`` (for isinstance checks), which is
    absent or a different module. ``httpx2`` ships this alias for that case.
    """
    try:
        import httpx2
    except ImportError:
        return
    if "httpx" not in sys.modules:
        httpx2.alias_httpx()


def make_clients(provider: str, provider_url: str, tracer: trace.Tracer) -> Clients:
    """SDK clients for the fake provider; no retries, so errors end the call."""
    if provider == "openai":
        client = openai.OpenAI(
            base_url=f"{provider_url}/v1",
            api_key=FAKE_PROVIDER_KEY,
            max_retries=0,
            timeout=SDK_TIMEOUT_S,
        )
        return Clients(tracer=tracer, openai_client=client)
    # The SDK's own tracing is off so that only the instrumentation under
    # test records the calls.
    claude = anthropic.Anthropic(
        base_url=provider_url,
        api_key=FAKE_PROVIDER_KEY,
        max_retries=0,
        timeout=SDK_TIMEOUT_S,
        open_telemetry=False,
    )
    return Clients(tracer=tracer, anthropic_client=claude)


def run_instrumentation(name: str, settings: WorkloadSettings) -> RunResult:
    """Run every scenario of ``name``'s provider and export the spans."""
    if not settings.provider_url:
        raise ConfigError("setting provider_url: the runner needs the provider URL")
    provider = INSTRUMENTATIONS[name]
    result = RunResult(name, f"{settings.service_name}-{name}")

    exporter = CountingExporter(make_exporter(settings))
    tracer_provider = TracerProvider(
        resource=make_resource(settings, result.service_name)
    )
    tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(tracer_provider)
    instrumentor = instrument(name, tracer_provider)
    tracer = tracer_provider.get_tracer("llmobs.workload", __version__)
    clients = make_clients(provider, settings.provider_url.rstrip("/"), tracer)

    try:
        for round_number in range(1, settings.rounds + 1):
            log.info("%s: round %d of %d", name, round_number, settings.rounds)
            _run_round(provider, clients, result)
    finally:
        # Flush before shutdown so the batch processor hands over every span.
        tracer_provider.force_flush()
        tracer_provider.shutdown()
        instrumentor.uninstrument()

    result.traces_exported = len(exporter.trace_ids)
    result.spans_exported = exporter.spans_exported
    result.spans_failed = exporter.spans_failed
    result.export_failures = exporter.export_failures
    return result


def _run_round(provider: str, clients: Clients, result: RunResult) -> None:
    for scenario_name, scenario in SCENARIOS[provider].items():
        try:
            scenario(clients)
        except Exception as exc:  # a failed scenario is reported, not fatal
            log.error(
                "%s: scenario %s failed: %r", result.instrumentation, scenario_name, exc
            )
            result.scenarios_failed.append(scenario_name)
            continue
        result.scenarios_ok += 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m llmobs.workload.runner",
        description="Run the workload scenarios under one instrumentation.",
    )
    parser.add_argument("--instrumentation", required=True, choices=INSTRUMENTATIONS)
    parser.add_argument("--result-file", default=None, help="write the result here")
    config.add_flags(parser, WorkloadSettings)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure()
    try:
        settings = config.load(WorkloadSettings, args)
        result = run_instrumentation(args.instrumentation, settings)
    except ConfigError as exc:
        print(f"workload runner: configuration error: {exc}", file=sys.stderr)
        return 2

    payload = json.dumps(dataclasses.asdict(result))
    if args.result_file:
        Path(args.result_file).write_text(payload)
    else:
        print(payload)
    log.info(
        "%s: %d spans in %d traces exported, %d export failures, %d scenarios failed",
        result.instrumentation,
        result.spans_exported,
        result.traces_exported,
        result.export_failures,
        len(result.scenarios_failed),
    )
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
