"""``llmobs sink-metrics``: metric windows into PostgreSQL and Redis."""

from __future__ import annotations

import argparse
import logging

from llmobs import settings as config
from sinks.metrics.settings import MetricsSinkSettings

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    config.add_flags(parser, MetricsSinkSettings)


def run(args: argparse.Namespace) -> int:
    import asyncio

    settings = config.load(MetricsSinkSettings, args)
    asyncio.run(_serve(settings))
    return 0


async def _serve(settings: MetricsSinkSettings) -> None:
    import asyncio
    import signal

    from llmobs.topics import ensure_topics
    from sinks.metrics.worker import MetricsSink

    await asyncio.to_thread(
        ensure_topics,
        settings.kafka_bootstrap,
        (settings.metrics_topic, settings.alerts_topic, settings.dlq_topic),
    )
    stop = asyncio.Event()

    def request_stop(name: str) -> None:
        log.info("%s received; finishing the current batch", name)
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, request_stop, sig.name)
    await MetricsSink(settings).run(stop)
