"""The Tempo handler's batch rules against a scripted local OTLP/HTTP backend.

No Kafka here: records are decoded SpanBatch payloads in hand-made Items, and
``write`` is called the way the consume loop calls it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from otlp_batches import span_batches, traces

import schemas
from llmobs.retry import ShutdownRequested
from sinks.consumer import BackendUnavailable, Item
from sinks.tempo.settings import TempoSettings
from sinks.tempo.worker import HEADER_HTTP_STATUS, TempoHandler, TempoSink, stats

CODEC = schemas.codec(schemas.SPAN_BATCH)
Answer = tuple[int, bytes, dict[str, str]]


class FakeMessage:
    """Just what Item and the DLQ headers read from a Kafka message."""

    def __init__(self, value: bytes, offset: int, partition: int = 0) -> None:
        self._value = value
        self._offset = offset
        self._partition = partition

    def topic(self) -> str:
        return "sampled"

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return b""

    def value(self) -> bytes:
        return self._value

    def headers(self) -> list[tuple[str, bytes]]:
        return []


class Backend:
    """Answers each request with ``answer(tenant, request)``; keeps them all."""

    def __init__(self) -> None:
        self.answer: Callable[[str, ExportTraceServiceRequest], Answer] = (
            lambda _t, _r: (200, b"", {})
        )
        self.seen: list[tuple[str, ExportTraceServiceRequest]] = []
        self.delay_s: dict[str, float] = {}
        self.answered: list[str] = []
        self.accepted: list[tuple[str, ExportTraceServiceRequest]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        # aiohttp has already inflated the gzip body.
        body = await request.read()
        tenant = request.headers.get("X-Scope-OrgID", "")
        parsed = ExportTraceServiceRequest.FromString(body)
        self.seen.append((tenant, parsed))
        await asyncio.sleep(self.delay_s.get(tenant, 0.0))
        status, payload, headers = self.answer(tenant, parsed)
        self.answered.append(tenant)
        if 200 <= status < 300:
            self.accepted.append((tenant, parsed))
        return web.Response(status=status, body=payload, headers=headers)

    def span_ids(self, tenant: str) -> list[bytes]:
        """Spans of ``tenant`` in the requests answered 2xx."""
        return [
            span.span_id
            for seen_tenant, request in self.accepted
            if seen_tenant == tenant
            for rs in request.resource_spans
            for ss in rs.scope_spans
            for span in ss.spans
        ]


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    state = Backend()
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/traces", state.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.url = f"http://127.0.0.1:{port}"
    yield state
    await runner.cleanup()


def handler(url: str, **overrides: Any) -> TempoHandler:
    values: dict[str, Any] = {"otlp_endpoint": url, "retry_deadline_s": 0.5}
    values.update(overrides)
    return TempoHandler(TempoSettings(**values))


def items_of(*tenants: str, per_tenant: int = 2) -> list[Item]:
    """Decoded records, ``per_tenant`` traces each, tenants set as given."""
    out = []
    for seed, tenant in enumerate(tenants):
        for _, value in span_batches(traces(per_tenant, "acme", seed=seed + 1)):
            record = CODEC.decode(value)
            record["tenant"] = tenant
            message = FakeMessage(CODEC.encode(record), len(out))
            out.append(Item(message, record, size=len(record["spans"])))  # type: ignore[arg-type]
    return out


def spans_of(items: list[Item], tenant: str) -> list[bytes]:
    return sorted(
        bytes.fromhex(span["span_id"])
        for item in items
        if item.payload["tenant"] == tenant
        for span in item.payload["spans"]
    )


async def test_unsendable_tenant_costs_only_its_own_records(backend: Backend) -> None:
    # CR LF in a header value makes the HTTP client refuse the whole request;
    # that must not escape write() and stop the sink on every restart.
    items = items_of("acme", "evil\r\nX-Injected: 1", "globex")
    tempo = handler(backend.url)

    await tempo.write(items, asyncio.Event())
    await tempo.exporter.close()

    dead = [item for item in items if item.dead]
    assert dead and all(item.payload["tenant"].startswith("evil") for item in dead)
    assert {item.reason for item in dead} == {"invalid_tenant"}
    assert "cannot be sent" in dead[0].detail
    assert sorted(backend.span_ids("acme")) == spans_of(items, "acme")
    assert sorted(backend.span_ids("globex")) == spans_of(items, "globex")


@pytest.mark.parametrize("tenant", ["", " acme", "acme\t", "caf\u00e9", "a\x00b"])
async def test_tenants_a_header_cannot_carry_faithfully_are_refused(
    backend: Backend, tenant: str
) -> None:
    tempo = handler(backend.url)
    items = items_of(tenant, per_tenant=1)

    await tempo.write(items, asyncio.Event())
    await tempo.exporter.close()

    assert backend.seen == []
    assert all(item.reason == "invalid_tenant" for item in items)


async def test_backend_away_past_the_deadline_holds_and_resends_only_the_rest(
    backend: Backend,
) -> None:
    down = {"globex"}
    backend.answer = lambda tenant, _r: (
        (503, b"", {})
        if tenant in down
        else (
            200,
            b"",
            {},
        )
    )
    items = items_of("acme", "globex")
    tempo = handler(backend.url, retry_deadline_s=0.3)

    with pytest.raises(BackendUnavailable):
        await tempo.write(items, asyncio.Event())
    down.clear()
    await tempo.write(items, asyncio.Event())
    await tempo.exporter.close()

    assert not any(item.dead for item in items)
    # What was accepted before the outage is not sent a second time.
    assert sorted(backend.span_ids("acme")) == spans_of(items, "acme")
    assert sorted(backend.span_ids("globex")) == spans_of(items, "globex")
    assert tempo.exported_spans == len(spans_of(items, "acme")) * 2


async def test_a_failing_tenant_does_not_cut_off_the_others(backend: Backend) -> None:
    backend.answer = lambda tenant, _r: (
        (200, b"", {})
        if tenant == "slow"
        else (
            503,
            b"",
            {},
        )
    )
    backend.delay_s["slow"] = 0.5
    items = items_of("down", "slow")
    tempo = handler(backend.url, retry_deadline_s=0.05)

    with pytest.raises(BackendUnavailable):
        await tempo.write(items, asyncio.Event())
    await tempo.exporter.close()

    # The slow tenant's request ran to its answer, and counts as accepted.
    assert "slow" in backend.answered
    assert tempo.exported_spans == len(spans_of(items, "slow"))


async def test_shutdown_while_the_backend_is_away_leaves_the_batch(
    backend: Backend,
) -> None:
    backend.answer = lambda _t, _r: (503, b"", {})
    stop = asyncio.Event()
    tempo = handler(backend.url, retry_deadline_s=30.0)
    items = items_of("acme")

    writing = asyncio.create_task(tempo.write(items, stop))
    while not backend.seen:
        await asyncio.sleep(0.05)
    stop.set()
    with pytest.raises(ShutdownRequested):
        await writing
    await tempo.exporter.close()
    assert not any(item.dead for item in items)


async def test_too_large_requests_are_split_before_anything_is_dead_lettered(
    backend: Backend,
) -> None:
    def at_most_two_spans(_tenant: str, request: ExportTraceServiceRequest) -> Answer:
        spans = sum(
            len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans
        )
        return (413, b"too big", {}) if spans > 2 else (200, b"", {})

    backend.answer = at_most_two_spans
    items = items_of("acme", per_tenant=3)
    tempo = handler(backend.url)

    await tempo.write(items, asyncio.Event())
    await tempo.exporter.close()

    assert not any(item.dead for item in items)
    assert sorted(backend.span_ids("acme")) == spans_of(items, "acme")
    assert tempo.split_requests > 0


async def test_a_single_span_still_too_large_is_dead_lettered(
    backend: Backend,
) -> None:
    backend.answer = lambda _t, _r: (413, b"too big", {})
    items = items_of("acme", per_tenant=1)
    tempo = handler(backend.url)

    await tempo.write(items, asyncio.Event())
    await tempo.exporter.close()

    assert [item.reason for item in items] == ["rejected_by_backend"]
    assert dict(items[0].extra_headers)[HEADER_HTTP_STATUS] == "413"


async def test_partial_success_rejections_are_counted_in_stats(
    backend: Backend,
) -> None:
    response = ExportTraceServiceResponse()
    response.partial_success.rejected_spans = 2
    response.partial_success.error_message = "spans too old"
    backend.answer = lambda _t, _r: (200, response.SerializeToString(), {})
    sink = TempoSink(TempoSettings(otlp_endpoint=backend.url))

    await sink.handler.write(items_of("acme", per_tenant=1), asyncio.Event())
    await sink.handler.exporter.close()

    assert stats(sink)["rejected_spans"] == 2
