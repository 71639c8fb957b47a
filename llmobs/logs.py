"""Process-wide logging set-up: one line per record, level from settings."""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterable

from llmobs.errors import ConfigError

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# How often one kind of warning or error line gets through.
REPEAT_INTERVAL_S = 30.0
# Kinds of lines remembered at most; the oldest are forgotten first.
_MAX_KINDS = 1000
_NUMBERS = re.compile(r"\d+")


def configure(level: str | None = None) -> None:
    """Configure the root logger once; LLMOBS_LOG_LEVEL overrides the default."""
    chosen = (level or os.environ.get("LLMOBS_LOG_LEVEL") or "INFO").upper()
    if chosen not in LEVELS:
        raise ConfigError(
            f"log level {chosen!r} (--log-level, LLMOBS_LOG_LEVEL) is not one of "
            + ", ".join(LEVELS)
        )
    logging.basicConfig(level=chosen, format=FORMAT, force=True)
    throttle_repeats()
    # Client libraries are chatty at INFO; their warnings still show.
    chatty = ("aiokafka", "faust", "mode", "kafka", "grpc", "httpx", "httpx2")
    for name in (*chatty, "aiohttp.access"):
        logging.getLogger(name).setLevel(
            max(logging.WARNING, logging.getLevelName(chosen))
        )


class RepeatFilter(logging.Filter):
    """Lets a kind of warning or error line through once per ``interval_s``.

    Client libraries repeat the same failure many times a second while a
    broker is away. Lines of a kind are the same text but for numbers
    (ports, ids, durations); the next line let through says how many were
    held back.
    """

    def __init__(self, interval_s: float = REPEAT_INTERVAL_S) -> None:
        super().__init__()
        self.interval_s = interval_s
        # kind -> (when one was last let through, how many held back since)
        self._kinds: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        text = record.getMessage()
        kind = (record.name, record.levelno, _NUMBERS.sub("#", text))
        now_s = time.monotonic()
        passed = self._kinds.get(kind)
        if passed is not None and now_s - passed[0] < self.interval_s:
            self._kinds[kind] = (passed[0], passed[1] + 1)
            return False
        if passed is not None and passed[1]:
            held = passed[1]
            record.msg = f"{text} ({held} more like it in {now_s - passed[0]:.0f}s)"
            record.args = ()
        self._kinds.pop(kind, None)
        self._kinds[kind] = (now_s, 0)
        if len(self._kinds) > _MAX_KINDS:
            del self._kinds[next(iter(self._kinds))]
        return True


def throttle_repeats(handlers: Iterable[logging.Handler] | None = None) -> None:
    """Give each of ``handlers`` (the root logger's) a RepeatFilter, once."""
    for handler in logging.getLogger().handlers if handlers is None else handlers:
        if not any(isinstance(f, RepeatFilter) for f in handler.filters):
            handler.addFilter(RepeatFilter())
