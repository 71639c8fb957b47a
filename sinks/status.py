"""A sink's own HTTP endpoint: ``/metrics`` for Prometheus, ``/healthz``.

Served on ``metrics_address`` (host:port) while the consume loop runs. The
loop's counters are labelled with the sink's name, so one dashboard reads
them all. ``/healthz`` fails once the loop has not polled Kafka for longer
than the group tolerates: by then its partitions belong to another member
and only a restart brings the sink back.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from aiohttp import web

from llmobs.errors import StageError
from llmobs.prometheus import CONTENT_TYPE, Exposition
from sinks.batch import ReportsCounters
from sinks.settings import parse_address

if TYPE_CHECKING:
    from sinks.consumer import BatchConsumer

log = logging.getLogger(__name__)


def render(loop: BatchConsumer, lag: int | None) -> str:
    """The loop's and its handler's counters in the Prometheus text format,
    with ``lag`` as read from the broker (None: the broker did not say)."""
    sink = {"sink": loop.name.removesuffix(" sink")}
    out = Exposition()
    for name, kind, help_text, value in (
        (
            "llmobs_sink_records_consumed_total",
            "counter",
            "Records read from the sink's topic.",
            loop.consumed_records,
        ),
        (
            "llmobs_sink_batches_written_total",
            "counter",
            "Batches made durable and committed.",
            loop.batches,
        ),
        (
            "llmobs_sink_dead_letters_total",
            "counter",
            "Records sent to the dead-letter topic.",
            loop.dead_lettered,
        ),
        (
            "llmobs_sink_backend_unavailable",
            "gauge",
            "1 while a batch is held because the backend is away.",
            int(loop.holding),
        ),
        (
            "llmobs_sink_assigned_partitions",
            "gauge",
            "Partitions this member of the group consumes.",
            len(loop.assignment),
        ),
        (
            "llmobs_sink_write_seconds",
            "gauge",
            "How long the batch being written has taken so far (0: none).",
            round(loop.write_s(), 3),
        ),
        (
            "llmobs_sink_last_batch_timestamp_seconds",
            "gauge",
            "Unix time the last batch was committed (0: none yet).",
            loop.last_batch_unix_s,
        ),
    ):
        out.family(name, kind, help_text, [(sink, value)])
    if lag is not None:
        out.family(
            "llmobs_sink_lag_records",
            "gauge",
            "Records of the assigned partitions not yet committed.",
            [(sink, lag)],
        )
    handler = loop.handler
    if isinstance(handler, ReportsCounters):
        for name, help_text, value in handler.counters():
            out.family(
                f"llmobs_sink_{name}_total", "counter", help_text, [(sink, value)]
            )
    return out.text()


def health(since_poll_s: float, max_poll_interval_s: float) -> tuple[bool, str]:
    """Whether a loop that last polled ``since_poll_s`` ago keeps its partitions."""
    if since_poll_s > max_poll_interval_s:
        return False, (
            f"no poll for {since_poll_s:.0f}s (the group's limit is "
            f"{max_poll_interval_s:.0f}s)\n"
        )
    return True, "ok\n"


async def start(address: str, loop: BatchConsumer) -> web.AppRunner:
    """Serve ``/metrics`` and ``/healthz`` for ``loop`` on ``address``."""
    host, port = parse_address("metrics_address", address)

    async def metrics(_request: web.Request) -> web.Response:
        lag = await asyncio.to_thread(loop.uncommitted_lag)
        return web.Response(
            body=render(loop, lag).encode(), headers={"Content-Type": CONTENT_TYPE}
        )

    async def healthz(_request: web.Request) -> web.Response:
        ok, text = health(loop.since_poll_s(), loop.settings.max_poll_interval_s)
        return web.Response(status=200 if ok else 503, text=text)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise StageError(
            f"{loop.name}: cannot serve /metrics on {address}: {exc.strerror}"
        ) from exc
    log.info("%s: /metrics and /healthz on http://%s:%d", loop.name, host, port)
    return runner
