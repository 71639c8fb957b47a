"""``llmobs sink-tempo``: export kept traces to Tempo until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse

from llmobs import settings as config
from sinks.tempo.settings import TempoSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    config.add_flags(parser, TempoSettings)


def run(args: argparse.Namespace) -> int:
    from sinks.serve import serve
    from sinks.tempo.worker import TempoSink

    settings = config.load(TempoSettings, args)
    return serve(
        settings.kafka_bootstrap,
        (settings.sampled_topic, settings.dlq_topic),
        TempoSink(settings).run,
    )
