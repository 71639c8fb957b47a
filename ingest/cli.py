"""`llmobs gateway`: OTLP/HTTP :4318 and OTLP/gRPC :4317 into Kafka."""

from __future__ import annotations

import argparse

from ingest.settings import GatewaySettings
from llmobs.settings import add_flags


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_flags(parser, GatewaySettings)


def run(args: argparse.Namespace) -> int:
    """Load the settings and serve until SIGTERM or SIGINT."""
    import asyncio

    from ingest.server import serve
    from llmobs.settings import load

    settings = load(GatewaySettings, args)
    asyncio.run(serve(settings))
    return 0
