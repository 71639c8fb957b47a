"""A sink's /metrics and /healthz: the address setting, the text, a live sink."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Callable
from typing import Any

import aiohttp
import asyncpg
import pytest
from spanbatches import encode, new_trace_id, span, span_batch

from llmobs.errors import ConfigError
from sinks.consumer import BatchConsumer, LoopSettings
from sinks.postgres import PostgresHandler, PostgresSpanSink
from sinks.settings import SinkSettings, parse_address
from sinks.status import health, render


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:6067", ("127.0.0.1", 6067)),
        ("0.0.0.0:9400", ("0.0.0.0", 9400)),
        (":6067", ("0.0.0.0", 6067)),
        ("[::1]:6067", ("::1", 6067)),
        ("sink.internal:1", ("sink.internal", 1)),
    ],
)
def test_an_address_is_host_and_port(value: str, expected: tuple[str, int]) -> None:
    assert parse_address("metrics_address", value) == expected


@pytest.mark.parametrize("value", ["6067", "host:", "host:http", "host:0", "h:65536"])
def test_a_bad_address_is_a_config_error_naming_the_setting(value: str) -> None:
    with pytest.raises(ConfigError, match="setting metrics_address"):
        SinkSettings(metrics_address=value)


def test_health_fails_once_the_group_would_have_evicted_the_sink() -> None:
    assert health(299.0, 300.0)[0]
    ok, text = health(301.0, 300.0)
    assert not ok
    assert "no poll for 301s" in text


def test_the_text_holds_the_loop_and_handler_counters() -> None:
    loop = BatchConsumer(
        "postgres sink",
        LoopSettings("127.0.0.1:1", "llm.spans", "g", "llm.dlq", 10, 1.0, None),
        PostgresHandler(SinkSettings()),
    )
    loop.consumed_records, loop.batches, loop.dead_lettered = 12, 3, 2
    loop.handler.written_spans = 40  # type: ignore[attr-defined]

    text = render(loop, lag=7)

    samples = dict(re.findall(r'^(\w+)\{sink="postgres"\} (\S+)$', text, re.M))
    assert samples["llmobs_sink_records_consumed_total"] == "12"
    assert samples["llmobs_sink_batches_written_total"] == "3"
    assert samples["llmobs_sink_dead_letters_total"] == "2"
    assert samples["llmobs_sink_lag_records"] == "7"
    assert samples["llmobs_sink_spans_written_total"] == "40"
    assert samples["llmobs_sink_backend_unavailable"] == "0"
    assert "# TYPE llmobs_sink_lag_records gauge" in text


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def scrape(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


@pytest.mark.integration
async def test_a_running_sink_serves_its_counters_until_it_stops(
    new_topic: Callable[..., str],
    produce: Callable[..., None],
    sink_settings: Callable[..., SinkSettings],
    db: asyncpg.Connection,
) -> None:
    topic = new_topic("sink-status")
    batches = [
        span_batch(new_trace_id(), [span(f"{i:015x}a"), span(f"{i:015x}b")])
        for i in range(1, 4)
    ]
    produce(topic, [encode(b) for b in batches])
    address = f"127.0.0.1:{free_port()}"
    settings = sink_settings(topic, metrics_address=address, max_idle_s=None)
    sink = PostgresSpanSink(settings)
    stop = asyncio.Event()
    running = asyncio.create_task(sink.run(stop))
    samples: dict[str, Any] = {}
    try:
        for _ in range(300):
            await asyncio.sleep(0.2)
            try:
                _status, text = await scrape(f"http://{address}/metrics")
            except aiohttp.ClientConnectionError:
                continue
            samples = dict(re.findall(r'^(\w+)\{sink="postgres"\} (\S+)$', text, re.M))
            if samples.get("llmobs_sink_batches_written_total", "0") != "0" and (
                samples.get("llmobs_sink_spans_written_total") == "6"
            ):
                break
        assert samples["llmobs_sink_records_consumed_total"] == "3"
        assert samples["llmobs_sink_spans_written_total"] == "6"
        assert float(samples["llmobs_sink_last_batch_timestamp_seconds"]) > 0
        assert await scrape(f"http://{address}/healthz") == (200, "ok\n")
    finally:
        stop.set()
        await asyncio.wait_for(running, 60)

    with pytest.raises(aiohttp.ClientConnectionError):
        await scrape(f"http://{address}/healthz")
