"""``llmobs streams``: run the Faust worker of the decode stage."""

from __future__ import annotations

import argparse

from llmobs import settings as config
from streams.settings import StreamSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    config.add_flags(parser, StreamSettings)


def run(args: argparse.Namespace) -> int:
    import faust

    from llmobs.topics import ensure_topics
    from streams.app import create_app

    settings = config.load(StreamSettings, args)
    ensure_topics(
        settings.kafka_bootstrap,
        (settings.input_topic, settings.spans_topic, settings.dlq_topic),
        partitions=settings.topic_partitions,
    )
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=(args.log_level or "info").lower(), quiet=True)
    worker.execute_from_commandline()
    return 0
