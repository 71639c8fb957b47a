"""The one retry helper: exponential backoff with jitter and a deadline.

Only errors on the caller's allow-list are retried; the sleep between tries
returns early when the shutdown event is set.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """How long to wait between tries and how long to try in all."""

    initial_s: float = 0.2
    max_s: float = 10.0
    multiplier: float = 2.0
    deadline_s: float = 120.0

    def delay_s(self, attempt: int) -> float:
        """Full-jitter delay before try ``attempt`` (1-based)."""
        ceiling = min(self.max_s, self.initial_s * self.multiplier ** (attempt - 1))
        return random.uniform(0, ceiling)


class ShutdownRequested(Exception):
    """Raised out of a retry loop when shutdown interrupts the wait."""


async def retry_async(
    what: str,
    call: Callable[[], Awaitable[T]],
    retriable: tuple[type[BaseException], ...],
    backoff: Backoff = Backoff(),
    shutdown: asyncio.Event | None = None,
    is_retriable: Callable[[BaseException], bool] | None = None,
) -> T:
    """Run ``call`` until it succeeds, a non-retriable error, or the deadline."""
    started = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        try:
            return await call()
        except retriable as exc:
            if is_retriable is not None and not is_retriable(exc):
                raise
            elapsed_s = time.monotonic() - started
            if elapsed_s >= backoff.deadline_s:
                raise
            delay_s = min(backoff.delay_s(attempt), backoff.deadline_s - elapsed_s)
            log.warning(
                "%s failed (attempt %d, %s); retrying in %.2fs",
                what,
                attempt,
                type(exc).__name__,
                delay_s,
            )
            if shutdown is None:
                await asyncio.sleep(delay_s)
                continue
            try:
                await asyncio.wait_for(shutdown.wait(), timeout=delay_s)
            except TimeoutError:
                continue
            raise ShutdownRequested(what) from exc
