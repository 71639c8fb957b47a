"""``llmobs sink``: run the PostgreSQL sink worker until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse

from llmobs import settings as config
from sinks.settings import SinkSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    config.add_flags(parser, SinkSettings)


def run(args: argparse.Namespace) -> int:
    from sinks.postgres import PostgresSpanSink
    from sinks.serve import serve

    settings = config.load(SinkSettings, args)
    return serve(
        settings.kafka_bootstrap,
        (settings.spans_topic, settings.dlq_topic),
        PostgresSpanSink(settings).run,
    )
