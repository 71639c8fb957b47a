"""The Tempo sink against a real OTLP trace backend (Jaeger, infra/jaeger.sh).

Every trace is read back through Jaeger's OTLP query API and compared span by
span with what the instrumentation emitted.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from aiohttp import web
from confluent_kafka import Consumer
from google.protobuf import json_format
from opentelemetry.proto.trace.v1.trace_pb2 import Span, TracesData
from otlp_batches import produce, span_batches, traces

import schemas
from llmobs import topics
from llmobs.kafka import consumer_config
from sinks.tempo.settings import TempoSettings
from sinks.tempo.worker import HEADER_HTTP_STATUS, TempoSink

pytestmark = pytest.mark.integration

JAEGER_QUERY = "http://127.0.0.1:16686"
JAEGER_OTLP = "http://127.0.0.1:24318"


@pytest.fixture(scope="module")
def jaeger() -> str:
    try:
        urllib.request.urlopen(f"{JAEGER_QUERY}/api/services", timeout=5).read()
    except OSError as exc:
        pytest.fail(f"Jaeger is not running ({exc}); run infra/jaeger.sh start")
    return JAEGER_OTLP


def fetch_trace(
    trace_id: str, expected_spans: int, timeout_s: float = 30
) -> TracesData:
    """The trace as Jaeger stores it, once it holds ``expected_spans``."""
    deadline = time.monotonic() + timeout_s
    found = TracesData()
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(
                f"{JAEGER_QUERY}/api/v3/traces/{trace_id}", timeout=5
            ) as response:
                found = _parse(json.loads(response.read())["result"])
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise
        if (
            sum(len(ss.spans) for rs in found.resource_spans for ss in rs.scope_spans)
            >= expected_spans
        ):
            return found
        time.sleep(0.3)
    return found


def _parse(doc: dict[str, Any]) -> TracesData:
    # OTLP/JSON writes ids as hex; protobuf's JSON parser expects base64.
    for rs in doc.get("resourceSpans", ()):
        for ss in rs.get("scopeSpans", ()):
            for span in ss.get("spans", ()):
                _b64(span)
                for link in span.get("links", ()):
                    _b64(link)
    return json_format.ParseDict(doc, TracesData(), ignore_unknown_fields=True)


def _b64(item: dict[str, Any]) -> None:
    for key in ("traceId", "spanId", "parentSpanId"):
        if item.get(key):
            item[key] = base64.b64encode(bytes.fromhex(item[key])).decode()


def canonical(span: Span) -> Span:
    """The span with attribute order removed (Jaeger sorts by key)."""
    copy = Span()
    copy.CopyFrom(span)
    for holder in [copy, *copy.events, *copy.links]:
        ordered = sorted(holder.attributes, key=lambda kv: kv.key)
        del holder.attributes[:]
        holder.attributes.extend(ordered)
    copy.ClearField("flags")
    for link in copy.links:
        link.ClearField("flags")
    return copy


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
