"""The retry helper: allow-listed errors retried until success or deadline."""

from __future__ import annotations

import asyncio

import pytest

from llmobs.retry import Backoff, ShutdownRequested, retry_async

FAST = Backoff(initial_s=0.001, max_s=0.01, deadline_s=1.0)


class Flaky(Exception):
    pass


async def test_retries_listed_errors_until_success() -> None:
    calls = 0

    async def call() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise Flaky
        return "done"

    assert await retry_async("flaky", call, (Flaky,), FAST) == "done"
    assert calls == 3


async def test_other_errors_are_raised_at_once() -> None:
    calls = 0

    async def call() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("bad")

    with pytest.raises(ValueError):
        await retry_async("bad", call, (Flaky,), FAST)
    assert calls == 1


async def test_gives_up_at_the_deadline() -> None:
    async def call() -> None:
        raise Flaky

    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(Flaky):
        await retry_async("down", call, (Flaky,), Backoff(0.01, 0.02, deadline_s=0.2))
    assert loop.time() - started < 1.0


async def test_shutdown_interrupts_the_wait() -> None:
    shutdown = asyncio.Event()
    shutdown.set()

    async def call() -> None:
        raise Flaky

    with pytest.raises(ShutdownRequested):
        await retry_async("down", call, (Flaky,), Backoff(5, 5, 60), shutdown)


def test_delays_grow_and_stay_under_the_cap() -> None:
    backoff = Backoff(initial_s=1, max_s=4, multiplier=2)

    delays = [backoff.delay_s(n) for n in range(1, 8) for _ in range(50)]

    assert all(0 <= d <= 4 for d in delays)
    assert max(backoff.delay_s(1) for _ in range(50)) <= 1
