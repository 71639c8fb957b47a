"""``llmobs sink-archive``: archive every span as Parquet until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import logging

from llmobs import settings as config
from sinks.archive.settings import ArchiveSettings

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    config.add_flags(parser, ArchiveSettings)


def run(args: argparse.Namespace) -> int:
    import asyncio

    settings = config.load(ArchiveSettings, args)
    asyncio.run(_serve(settings))
    return 0


async def _serve(settings: ArchiveSettings) -> None:
    import asyncio
    import signal

    from llmobs.topics import ensure_topics
    from sinks.archive.worker import ArchiveSink

    await asyncio.to_thread(
        ensure_topics,
        settings.kafka_bootstrap,
        (settings.spans_topic, settings.dlq_topic),
    )

    stop = asyncio.Event()

    def request_stop(name: str) -> None:
        log.info("%s received; uploading open files", name)
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, request_stop, sig.name)

    await ArchiveSink(settings).run(stop)
