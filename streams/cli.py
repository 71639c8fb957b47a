"""``llmobs streams``: run the Faust worker of the decode and sampling stages."""

from __future__ import annotations

import argparse
import dataclasses
import logging

from llmobs import settings as config
from streams.metrics.settings import MetricsSettings
from streams.sampling.settings import SamplingSettings
from streams.settings import StreamSettings

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    config.add_flags(parser, StreamSettings)
    config.add_flags(parser, SamplingSettings, title="tail sampling")
    config.add_flags(parser, MetricsSettings, title="windowed metrics")


def run(args: argparse.Namespace) -> int:
    import faust

    from llmobs.topics import ensure_topics, partition_count
    from streams.app import create_app

    settings = config.load(StreamSettings, args)
    sampling = config.load(SamplingSettings, args)
    metrics = config.load(MetricsSettings, args)
    ensure_topics(
        settings.kafka_bootstrap,
        (
            settings.input_topic,
            settings.spans_topic,
            settings.dlq_topic,
            sampling.sampled_topic,
            metrics.metrics_topic,
        ),
        partitions=settings.topic_partitions,
        replication_factor=settings.topic_replication_factor,
    )
    # The sampler's tables are partitioned like llm.spans, so that a trace's
    # buffered spans live in the partition its spans arrive on.
    partitions = partition_count(settings.kafka_bootstrap, settings.spans_topic)
    if partitions != settings.topic_partitions:
        log.info(
            "%s has %d partitions; the state tables follow it",
            settings.spans_topic,
            partitions,
        )
        settings = dataclasses.replace(settings, topic_partitions=partitions)  # type: ignore[type-var]
    app = create_app(settings, sampling, metrics)
    worker = faust.Worker(app, loglevel=(args.log_level or "info").lower(), quiet=True)
    worker.execute_from_commandline()
    return 0
