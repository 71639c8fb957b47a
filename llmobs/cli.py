"""The ``llmobs`` console script: one subcommand per process.

Each subcommand lives in a light module that declares its flags and imports
its heavy dependencies only when it runs, so ``llmobs --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from llmobs import __version__, logs
from llmobs.errors import ConfigError, ObservatoryError

log = logging.getLogger(__name__)

# subcommand -> (module with add_arguments(parser) and run(args) -> int, help)
COMMANDS: dict[str, tuple[str, str]] = {
    "gateway": ("ingest.cli", "OTLP/HTTP :4318 and OTLP/gRPC :4317 ingest into Kafka"),
    "streams": ("streams.cli", "Faust worker: decode, normalize, route to llm.spans"),
    "sink": ("sinks.cli", "sink worker: llm.spans into PostgreSQL llm_spans"),
    "sink-tempo": (
        "sinks.tempo.cli",
        "Tempo sink: llm.spans.sampled as OTLP/HTTP to Tempo (or Jaeger)",
    ),
    "sink-archive": (
        "sinks.archive.cli",
        "archive sink: llm.spans as Parquet in a folder or on S3",
    ),
    "sink-metrics": (
        "sinks.metrics.cli",
        "metrics sink: llm.metrics.1m into llm_metrics_1m, Redis counters, alerts",
    ),
    "migrate": ("sinks.migrate_cli", "create or upgrade the database schema"),
    "topics": ("llmobs.topics_cli", "create the pipeline's Kafka topics"),
    "workload": (
        "llmobs.workload.cli",
        "drive real instrumented SDKs at a fake provider",
    ),
    "fake-provider": (
        "llmobs.workload.provider_cli",
        "serve the fake LLM provider APIs",
    ),
    "replay": (
        "llmobs.replay",
        "send OTLP files, or the Parquet archive, back into the pipeline",
    ),
    "summary": ("sinks.summary", "print what PostgreSQL holds: spans, tokens, errors"),
    "price": (
        "streams.cost.cli",
        "price a model call, or list models seen without a price",
    ),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported to declare its flags."""
    parser = argparse.ArgumentParser(
        prog="llmobs",
        description="OTLP traces of LLM apps, through Kafka, to storage.",
    )
    parser.add_argument("--version", action="version", version=f"llmobs {__version__}")
    parser.add_argument(
        "--log-level", default=None, help="DEBUG, INFO, WARNING (env LLMOBS_LOG_LEVEL)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        child = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            module = importlib.import_module(module_name)
            module.add_arguments(child)
            child.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if a in COMMANDS), None)
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        logs.configure(args.log_level)
        # Every command's settings must be known, so that a config file
        # shared by all processes is checked against all of them.
        for module_name, _ in COMMANDS.values():
            importlib.import_module(module_name)
        return int(args._module.run(args) or 0)
    except ConfigError as exc:
        print(f"llmobs {args.command}: configuration error: {exc}", file=sys.stderr)
        return 2
    except ObservatoryError as exc:
        log.error("llmobs %s failed: %s", args.command, exc)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
