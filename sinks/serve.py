"""Run one sink worker in the foreground until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

from llmobs.topics import ensure_topics

log = logging.getLogger(__name__)


def serve(
    kafka_bootstrap: str,
    topics: tuple[str, ...],
    run: Callable[[asyncio.Event], Awaitable[None]],
    on_stop: str = "finishing the current batch",
) -> int:
    """Create ``topics`` if missing, then ``run(stop)`` until a signal sets stop."""
    asyncio.run(_serve(kafka_bootstrap, topics, run, on_stop))
    return 0


async def _serve(
    kafka_bootstrap: str,
    topics: tuple[str, ...],
    run: Callable[[asyncio.Event], Awaitable[None]],
    on_stop: str,
) -> None:
    log.info("connecting to Kafka at %s for %s", kafka_bootstrap, ", ".join(topics))
    await asyncio.to_thread(ensure_topics, kafka_bootstrap, topics)
    stop = asyncio.Event()

    def request_stop(name: str) -> None:
        log.info("%s received; %s", name, on_stop)
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, request_stop, sig.name)
    await run(stop)
