"""``llmobs workload``: real instrumented SDK traffic into the gateway.

Starts one runner process per instrumentation (instrumentors patch the SDKs
globally, so they cannot share a process), points them at the fake provider
(started here on a free port unless ``--provider-url`` names one) and prints
what each exported. Exits non-zero when any export or scenario failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from llmobs import settings as config
from llmobs.errors import ConfigError
from llmobs.settings import setting, settings_class
from llmobs.workload import INSTRUMENTATIONS, RunResult

log = logging.getLogger(__name__)

DEFAULT_ENDPOINTS = {"http": "http://127.0.0.1:4318", "grpc": "http://127.0.0.1:4317"}
API_KEY_ENV = config.env_name("api_key")


@settings_class
class WorkloadSettings:
    """Settings of ``llmobs workload`` and of each runner it starts."""

    config_section = "workload"

    otlp_endpoint: str | None = setting(
        None, "gateway OTLP endpoint (default :4318 for http, :4317 for grpc)"
    )
    protocol: str = setting("http", "OTLP exporter protocol: http or grpc")
    provider_url: str | None = setting(
        None, "fake provider base URL; one is started in-process when unset"
    )
    rounds: int = setting(1, "how many times to run every scenario")
    instrumentations: tuple[str, ...] = setting(
        tuple(INSTRUMENTATIONS), "comma list of instrumentations to run"
    )
    service_name: str = setting(
        "llmobs-demo", "service.name prefix; each runner appends its instrumentation"
    )
    api_key: str | None = setting(
        None, "API key sent as 'Authorization: Bearer' on export", secret=True
    )
    tenant: str | None = setting(None, "value of the tenant.id resource attribute")
    runner_timeout_s: float = setting(120.0, "deadline for each runner process")

    def validate(self) -> None:
        if self.protocol not in DEFAULT_ENDPOINTS:
            raise ConfigError(
                f"setting protocol: {self.protocol!r} is not http or grpc"
            )
        if self.rounds < 1:
            raise ConfigError(f"setting rounds: {self.rounds} is below 1")
        unknown = sorted(set(self.instrumentations) - set(INSTRUMENTATIONS))
        if unknown or not self.instrumentations:
            raise ConfigError(
                f"setting instrumentations: unknown {', '.join(unknown) or '(none)'}; "
                f"known: {', '.join(INSTRUMENTATIONS)}"
            )
        if self.runner_timeout_s <= 0:
            raise ConfigError("setting runner_timeout_s: must be positive")

    @property
    def endpoint(self) -> str:
        """The OTLP endpoint, defaulted by protocol."""
        return self.otlp_endpoint or DEFAULT_ENDPOINTS[self.protocol]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    config.add_flags(parser, WorkloadSettings)


def run(args: argparse.Namespace) -> int:
    settings = config.load(WorkloadSettings, args)
    log.info("workload starting: %s", config.describe(settings))
    results = asyncio.run(run_workload(settings))
    print(format_summary(results))
    return 0 if all(result.ok for result in results) else 1


async def run_workload(settings: WorkloadSettings) -> list[RunResult]:
    """Run every chosen instrumentation in its own process, concurrently."""
    async with fake_provider(settings.provider_url) as provider_url:
        runs = [
            run_instrumentation(name, settings, provider_url)
            for name in settings.instrumentations
        ]
        return list(await asyncio.gather(*runs))


@asynccontextmanager
async def fake_provider(url: str | None) -> AsyncIterator[str]:
    """``url`` when given, else a fake provider on a free local port."""
    if url:
        yield url.rstrip("/")
        return

    from aiohttp import web

    from llmobs.workload.provider import make_app

    runner = web.AppRunner(make_app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    log.info("fake provider serving on http://%s:%d", host, port)
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def run_instrumentation(
    name: str, settings: WorkloadSettings, provider_url: str
) -> RunResult:
    """Start ``python -m llmobs.workload.runner`` for one instrumentation."""
    with tempfile.TemporaryDirectory(prefix="llmobs-workload-") as folder:
        result_path = Path(folder) / "result.json"
        argv = [
            sys.executable, "-m", "llmobs.workload.runner",
            "--instrumentation", name,
            "--result-file", str(result_path),
            "--provider-url", provider_url,
            "--otlp-endpoint", settings.endpoint,
            "--protocol", settings.protocol,
            "--rounds", str(settings.rounds),
            "--service-name", settings.service_name,
        ]  # fmt: skip
        if settings.tenant:
            argv += ["--tenant", settings.tenant]

        # The key travels in the environment, not argv, which `ps` shows.
        env = dict(os.environ)
        env.pop(API_KEY_ENV, None)
        if settings.api_key:
            env[API_KEY_ENV] = settings.api_key
        env.setdefault(
            "LLMOBS_LOG_LEVEL", logging.getLevelName(log.getEffectiveLevel())
        )

        process = await asyncio.create_subprocess_exec(*argv, env=env)
        try:
            code = await asyncio.wait_for(process.wait(), settings.runner_timeout_s)
        except TimeoutError:
            process.kill()
            await process.wait()
            log.error(
                "runner %s timed out after %.0fs", name, settings.runner_timeout_s
            )
            return _failed(name, settings, "runner timed out")

        if not result_path.exists():
            log.error("runner %s exited with code %d and no result", name, code)
            return _failed(name, settings, f"runner exited with code {code}")
        return RunResult(**json.loads(result_path.read_text()))


def _failed(name: str, settings: WorkloadSettings, why: str) -> RunResult:
    service_name = f"{settings.service_name}-{name}"
    return RunResult(name, service_name, scenarios_failed=[why])


def format_summary(results: list[RunResult]) -> str:
    """A table: one row per instrumentation, with what it exported."""
    rows = [
        (
            "instrumentation", "service.name", "traces", "spans",
            "export failures", "scenarios ok", "scenarios failed",
        )
    ]  # fmt: skip
    for r in results:
        rows.append(
            (
                r.instrumentation,
                r.service_name,
                str(r.traces_exported),
                str(r.spans_exported),
                str(r.export_failures),
                str(r.scenarios_ok),
                ", ".join(r.scenarios_failed) or "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    )
