"""``llmobs sink-archive``: archive every span as Parquet until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse

from llmobs import settings as config
from sinks.archive.settings import ArchiveSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    config.add_flags(parser, ArchiveSettings)


def run(args: argparse.Namespace) -> int:
    from sinks.archive.worker import ArchiveSink
    from sinks.serve import serve

    settings = config.load(ArchiveSettings, args)
    return serve(
        settings.kafka_bootstrap,
        (settings.spans_topic, settings.dlq_topic),
        ArchiveSink(settings).run,
        on_stop="uploading open files",
    )
