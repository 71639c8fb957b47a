"""``llmobs sink-metrics``: metric windows into PostgreSQL and Redis."""

from __future__ import annotations

import argparse

from llmobs import settings as config
from sinks.metrics.settings import MetricsSinkSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    config.add_flags(parser, MetricsSinkSettings)


def run(args: argparse.Namespace) -> int:
    from sinks.metrics.worker import MetricsSink
    from sinks.serve import serve

    settings = config.load(MetricsSinkSettings, args)
    return serve(
        settings.kafka_bootstrap,
        (settings.metrics_topic, settings.alerts_topic, settings.dlq_topic),
        MetricsSink(settings).run,
    )
