"""The Tempo sink against a real OTLP trace backend (Jaeger, infra/jaeger.sh).

Every trace is read back through Jaeger's OTLP query API and compared span by
span with what the instrumentation emitted.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web
from confluent_kafka import Consumer
from jaeger_traces import canonical, fetch_trace, require_jaeger
from otlp_batches import produce, span_batches, traces

import schemas
from llmobs import topics
from llmobs.kafka import consumer_config
from sinks.tempo.settings import TempoSettings
from sinks.tempo.worker import HEADER_HTTP_STATUS, TempoSink

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def jaeger() -> str:
    return require_jaeger()


def settings(bootstrap: str, topic: str, group: str, **overrides: Any) -> TempoSettings:
    values: dict[str, Any] = {
        "kafka_bootstrap": bootstrap,
        "sampled_topic": topic,
        "group_id": group,
        "flush_interval_s": 0.3,
        "max_idle_s": 3.0,
        "retry_deadline_s": 5.0,
    }
    values.update(overrides)
    return TempoSettings(**values)


async def run_sink(s: TempoSettings) -> TempoSink:
    sink = TempoSink(s)
    await asyncio.wait_for(sink.run(asyncio.Event()), 90)
    return sink


async def test_traces_read_back_equal_what_was_emitted(
    jaeger: str, kafka_bootstrap: str, new_topic: Any, group_id: str
) -> None:
    topic = new_topic("tempo-in", partitions=2)
    sent = traces(6, "acme") + traces(4, "globex", seed=5)
    batches = span_batches(sent)
    produce(kafka_bootstrap, topic, batches)

    sink = await run_sink(
        settings(kafka_bootstrap, topic, group_id, otlp_endpoint=jaeger)
    )

    assert sink.handler.exported_spans == 40
    assert sink.loop.dead_lettered == 0
    priced = {
        s["span_id"]
        for _, value in batches
        for s in schemas.codec(schemas.SPAN_BATCH).decode(value)["spans"]
        if s.get("cost")
    }
    for request in sent:
        rs = request.resource_spans[0]
        original = {s.span_id: s for s in rs.scope_spans[0].spans}
        trace_id = next(iter(original.values())).trace_id.hex()
        stored = fetch_trace(trace_id, len(original))

        assert len(stored.resource_spans) == 1
        got_rs = stored.resource_spans[0]
        assert sorted(got_rs.resource.attributes, key=lambda kv: kv.key) == sorted(
            rs.resource.attributes, key=lambda kv: kv.key
        )
        assert got_rs.scope_spans[0].scope.name == rs.scope_spans[0].scope.name
        assert got_rs.scope_spans[0].scope.version == rs.scope_spans[0].scope.version
        got = {s.span_id: s for s in got_rs.scope_spans[0].spans}
        assert set(got) == set(original)
        for span_id, span in original.items():
            back = canonical(got[span_id])
            if span_id.hex() in priced:
                # Our cost attributes come on top of every original one.
                keys = {kv.key for kv in back.attributes}
                assert {kv.key for kv in span.attributes} < keys
                assert any(
                    k.startswith("llmobs.cost.")
                    for k in keys - {kv.key for kv in span.attributes}
                )
                continue
            assert back == canonical(span)


async def test_refused_requests_go_to_the_dlq(
    kafka_bootstrap: str, new_topic: Any, group_id: str
) -> None:
    async def refuse(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=400, text="tenant over its limit")

    app = web.Application()
    app.router.add_post("/v1/traces", refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    topic = new_topic("tempo-in", partitions=1)
    dlq = new_topic("tempo-dlq", partitions=1)
    produce(kafka_bootstrap, topic, span_batches(traces(3, "acme")))
    try:
        sink = await run_sink(
            settings(
                kafka_bootstrap,
                topic,
                group_id,
                dlq_topic=dlq,
                otlp_endpoint=f"http://127.0.0.1:{port}",
            )
        )
    finally:
        await runner.cleanup()

    assert sink.loop.dead_lettered == 3
    consumer = Consumer(consumer_config(kafka_bootstrap, group_id + "-dlq"))
    consumer.subscribe([dlq])
    messages: list[Any] = []
    for _ in range(40):
        messages += [m for m in consumer.consume(10, 0.5) if m.error() is None]
        if len(messages) >= 3:
            break
    consumer.close()
    assert len(messages) == 3
    headers = dict(messages[0].headers())
    assert headers[topics.HEADER_DLQ_REASON] == b"rejected_by_backend"
    assert headers[HEADER_HTTP_STATUS] == b"400"
    assert headers[topics.HEADER_DLQ_DETAIL] == b"tenant over its limit"
