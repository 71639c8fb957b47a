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
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from otlp_batches import produce, span_batches, traces

import schemas
from llmobs import topics
from llmobs.kafka import consumer_config
from sinks.tempo.settings import TempoSettings
from sinks.tempo.worker import HEADER_HTTP_STATUS, TempoSink
from streams.cost.attributes import cost_attributes

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


def as_stored(span: Span) -> Span:
    """``canonical``, and an absent status equal to an empty one, as Jaeger has."""
    copy = canonical(span)
    copy.status.SetInParent()
    return copy


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
    costs = {
        s["span_id"]: s["cost"]
        for _, value in batches
        for s in schemas.codec(schemas.SPAN_BATCH).decode(value)["spans"]
    }
    assert any(costs.values()), "the workload has priced spans"
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
            # Our cost attributes come on top of every original one.
            expected = Span()
            expected.CopyFrom(span)
            expected.attributes.extend(cost_attributes(costs[span_id.hex()]))
            assert as_stored(got[span_id]) == as_stored(expected)


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


class Recorder:
    """A local OTLP/HTTP backend: 503 while ``down``, else 200; keeps spans."""

    def __init__(self) -> None:
        self.down: set[str] = set()
        self.refused: dict[str, int] = {}
        self.accepted: dict[str, list[bytes]] = {}
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/traces", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        tenant = request.headers.get("X-Scope-OrgID", "")
        if tenant in self.down:
            self.refused[tenant] = self.refused.get(tenant, 0) + 1
            return web.Response(status=503)
        sent = ExportTraceServiceRequest.FromString(body)
        self.accepted.setdefault(tenant, []).extend(
            span.span_id
            for rs in sent.resource_spans
            for ss in rs.scope_spans
            for span in ss.spans
        )
        return web.Response(status=200)


def dead_letters(bootstrap: str, dlq: str, group: str, count: int) -> list[Any]:
    consumer = Consumer(consumer_config(bootstrap, group + "-dlq"))
    consumer.subscribe([dlq])
    messages: list[Any] = []
    for _ in range(40):
        messages += [m for m in consumer.consume(10, 0.5) if m.error() is None]
        if len(messages) >= count:
            break
    consumer.close()
    return messages


def with_tenant(
    batches: list[tuple[str, bytes]], tenant: str
) -> list[tuple[str, bytes]]:
    codec = schemas.codec(schemas.SPAN_BATCH)
    out = []
    for key, value in batches:
        record = codec.decode(value)
        record["tenant"] = tenant
        out.append((key, codec.encode(record)))
    return out


def span_ids(batches: list[tuple[str, bytes]]) -> list[bytes]:
    codec = schemas.codec(schemas.SPAN_BATCH)
    return sorted(
        bytes.fromhex(s["span_id"])
        for _, v in batches
        for s in codec.decode(v)["spans"]
    )


async def test_unsendable_tenant_is_dead_lettered_and_the_rest_exported(
    kafka_bootstrap: str, new_topic: Any, group_id: str
) -> None:
    topic = new_topic("tempo-in", partitions=1)
    dlq = new_topic("tempo-dlq", partitions=1)
    good = span_batches(traces(2, "acme"))
    bad = with_tenant(span_batches(traces(2, "acme", seed=4)), "evil\r\nX-Injected: 1")
    produce(kafka_bootstrap, topic, good[:1] + bad + good[1:])
    backend = Recorder()
    await backend.start()
    try:
        s = settings(
            kafka_bootstrap, topic, group_id, dlq_topic=dlq, otlp_endpoint=backend.url
        )
        sink = await run_sink(s)
        # Committed: a second run of the group finds nothing left to send.
        again = await run_sink(s)
    finally:
        await backend.stop()

    assert sorted(backend.accepted["acme"]) == span_ids(good)
    assert sink.loop.dead_lettered == 2
    assert again.handler.exported_spans == 0
    letters = dead_letters(kafka_bootstrap, dlq, group_id, 2)
    assert len(letters) == 2
    headers = dict(letters[0].headers())
    assert headers[topics.HEADER_DLQ_REASON] == b"invalid_tenant"


async def test_outage_past_the_deadline_holds_the_batch_until_the_backend_is_back(
    kafka_bootstrap: str, new_topic: Any, group_id: str
) -> None:
    topic = new_topic("tempo-in", partitions=2)
    acme = span_batches(traces(3, "acme"))
    globex = span_batches(traces(3, "globex", seed=5))
    produce(kafka_bootstrap, topic, acme + globex)
    backend = Recorder()
    backend.down.add("globex")
    await backend.start()
    s = settings(
        kafka_bootstrap,
        topic,
        group_id,
        otlp_endpoint=backend.url,
        retry_deadline_s=0.3,
        # One batch for everything: acme is accepted while globex is held.
        flush_interval_s=2.0,
    )
    sink = TempoSink(s)
    running = asyncio.create_task(sink.run(asyncio.Event()))
    try:
        # Well past the retry deadline, several holds in, the sink is still up.
        for _ in range(600):
            if backend.refused.get("globex", 0) >= 8 or running.done():
                break
            await asyncio.sleep(0.1)
        assert not running.done(), running.exception()
        backend.down.clear()
        await asyncio.wait_for(running, 90)
        again = await run_sink(s)
    finally:
        running.cancel()
        await backend.stop()

    # Accepted once each: acme before the outage ended, globex after it.
    assert sorted(backend.accepted["acme"]) == span_ids(acme)
    assert sorted(backend.accepted["globex"]) == span_ids(globex)
    assert sink.loop.dead_lettered == 0
    assert again.handler.exported_spans == 0
