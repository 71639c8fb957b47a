"""Process-wide logging set-up: one line per record, level from settings."""

from __future__ import annotations

import logging
import os

from llmobs.errors import ConfigError

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(level: str | None = None) -> None:
    """Configure the root logger once; LLMOBS_LOG_LEVEL overrides the default."""
    chosen = (level or os.environ.get("LLMOBS_LOG_LEVEL") or "INFO").upper()
    if chosen not in LEVELS:
        raise ConfigError(
            f"log level {chosen!r} (--log-level, LLMOBS_LOG_LEVEL) is not one of "
            + ", ".join(LEVELS)
        )
    logging.basicConfig(level=chosen, format=FORMAT, force=True)
    # Client libraries are chatty at INFO; their warnings still show.
    chatty = ("aiokafka", "faust", "mode", "kafka", "grpc", "httpx", "httpx2")
    for name in (*chatty, "aiohttp.access"):
        logging.getLogger(name).setLevel(
            max(logging.WARNING, logging.getLevelName(chosen))
        )
