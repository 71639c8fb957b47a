"""The whole pipeline as operators run it: the ``llmobs`` processes.

Each test starts the processes it needs (gateway, streams worker, sinks)
with their own topics, consumer groups and ports, sends real input, and reads
it back where it lands: PostgreSQL rows, the sampled topic, the trace
backend.
"""

from __future__ import annotations

import asyncio
import gzip
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from confluent_kafka import Consumer, Producer
from jaeger_traces import canonical, fetch_trace, require_jaeger
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.proto.trace.v1.trace_pb2 import Span

import schemas
from bench.processes import Pipeline, running
from llmobs import synthetic
from llmobs.topics import HEADER_DLQ_REASON, ensure_topics
from llmobs.workload.cli import WorkloadSettings, run_workload
from streams.cost.attributes import cost_attributes
from streams.metrics.sketch import RELATIVE_ACCURACY, exact_quantile

pytestmark = pytest.mark.integration


@pytest.fixture
def pipeline(kafka_bootstrap: str) -> Iterator[Pipeline]:
    pipe = Pipeline()
    ensure_topics(kafka_bootstrap, pipe.topics, partitions=3)
    with running(pipe, "gateway", "streams", "sink"):
        yield pipe


async def rows_of(database_url: str, tenant: str, expected: int, timeout_s: float = 90):
    """Wait until ``expected`` spans of ``tenant`` are in llm_spans, return them."""
    conn = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + timeout_s
        count = 0
        while time.monotonic() < deadline:
            count = await conn.fetchval(
                "SELECT count(*) FROM llm_spans WHERE tenant = $1", tenant
            )
            if count >= expected:
                break
            await asyncio.sleep(0.5)
        # Wait a little longer: a count past the expected one is a duplicate.
        await asyncio.sleep(1.0)
        return await conn.fetch(
            "SELECT * FROM llm_spans WHERE tenant = $1 ORDER BY start_time", tenant
        )
    finally:
        await conn.close()


async def test_real_instrumentations_reach_postgres(
    pipeline: Pipeline, database_url: str
) -> None:
    tenant = f"e2e-{uuid.uuid4().hex[:8]}"
    settings = WorkloadSettings(otlp_endpoint=pipeline.endpoint, tenant=tenant)
    results = await run_workload(settings)
    assert all(r.ok for r in results), results
    exported = sum(r.spans_exported for r in results)

    rows = await rows_of(database_url, tenant, exported)

    assert len(rows) == exported
    services = {r["service_name"] for r in rows}
    assert any(s.endswith("openai-v2") for s in services)
    assert any(s.endswith("openinference") for s in services)
    assert any(s.endswith("openllmetry-anthropic") for s in services)
    llm = [r for r in rows if r["operation"] == "chat" and r["input_tokens"]]
    assert {r["provider"] for r in llm} >= {"openai", "anthropic"}
    assert all(r["output_tokens"] is not None for r in llm)
    assert any(r["cache_read_tokens"] for r in rows if r["provider"] == "anthropic")
    assert any(r["operation"] == "embeddings" for r in rows)
    errors = [r for r in rows if r["status_code"] == "ERROR"]
    assert errors, "the 429/500 scenarios must be recorded as errors"
    agents = [r for r in rows if r["operation"] == "invoke_agent"]
    assert agents
    children = [r for r in rows if r["parent_span_id"] == agents[0]["span_id"]]
    assert len(children) >= 2
    assert {r["trace_id"] for r in children} == {agents[0]["trace_id"]}

    # Every model call with usage is priced from the catalog, exactly.
    calls = [r for r in rows if r["operation"] in ("chat", "embeddings")]
    with_usage = [r for r in calls if r["input_tokens"] is not None]
    assert with_usage
    for row in with_usage:
        assert row["cost_status"] == "priced", (
            row["response_model"],
            row["cost_match"],
        )
        assert row["cost_currency"] == "USD"
        assert row["cost_catalog"].startswith("genai-prices ")
        parts = (
            row["cost_input"]
            + row["cost_cache_read"]
            + row["cost_cache_write"]
            + row["cost_output"]
            + row["cost_reasoning"]
        )
        assert row["cost_total"] == parts
    assert any(r["cost_total"] > 0 for r in with_usage)
    assert any(r["cost_cache_read"] > 0 for r in with_usage)
    assert all(r["cost_status"] == "not_llm_call" for r in agents)
    assert all(
        r["cost_status"] in ("no_usage", "priced")
        for r in calls
        if r["input_tokens"] is None
    )


async def test_foreign_unkeyed_batches_are_rekeyed_and_bad_input_set_aside(
    pipeline: Pipeline, database_url: str, kafka_bootstrap: str, group_id: str
) -> None:
    tenant = f"e2e-{uuid.uuid4().hex[:8]}"
    traces = [synthetic.llm_trace(calls=2, tenant=tenant) for _ in range(6)]
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    # The Collector's default: no key, several traces in one message.
    producer.produce(
        pipeline.input_topic, synthetic.merge(traces[:3]).SerializeToString()
    )
    producer.produce(pipeline.input_topic, b"\x0a\xffnot a trace request")
    producer.produce(
        pipeline.input_topic, synthetic.otlp_json(synthetic.merge(traces[3:]))
    )
    assert producer.flush(10) == 0

    rows = await rows_of(database_url, tenant, 18)

    assert len(rows) == 18
    want = {t.resource_spans[0].scope_spans[0].spans[0].trace_id.hex() for t in traces}
    assert {r["trace_id"] for r in rows} == want
    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": group_id,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([pipeline.dlq_topic])
    letters = []
    deadline = time.monotonic() + 20
    while not letters and time.monotonic() < deadline:
        message = consumer.poll(1.0)
        if message is not None and not message.error():
            letters.append(message)
    consumer.close()
    assert letters
    assert dict(letters[0].headers())[HEADER_DLQ_REASON]


async def test_replay_of_a_json_lines_file_through_the_gateway(
    pipeline: Pipeline, database_url: str, tmp_path: Path
) -> None:
    tenant = f"e2e-{uuid.uuid4().hex[:8]}"
    path = tmp_path / "traces.jsonl"
    path.write_bytes(
        b"".join(
            synthetic.otlp_json(synthetic.llm_trace(calls=1, tenant=tenant)) + b"\n"
            for _ in range(4)
        )
    )

    replay = subprocess.run(
        [
            sys.executable,
            "-m",
            "llmobs.cli",
            "replay",
            str(path),
            "--otlp-endpoint",
            pipeline.endpoint,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert replay.returncode == 0, replay.stderr[-2000:]
    rows = await rows_of(database_url, tenant, 8)
    assert len(rows) == 8


@pytest.fixture
async def tee(pipeline_to_tempo: Pipeline) -> AsyncIterator[Tee]:
    """An OTLP/HTTP receiver that keeps a copy of what the app sent."""
    recorder = Tee(pipeline_to_tempo.endpoint)
    await recorder.start()
    yield recorder
    await recorder.stop()


@pytest.fixture
def pipeline_to_tempo(kafka_bootstrap: str) -> Iterator[Pipeline]:
    """Gateway, streams worker (with the sampler) and the Tempo sink."""
    pipe = Pipeline(extra_env={"LLMOBS_OTLP_ENDPOINT": require_jaeger()})
    ensure_topics(kafka_bootstrap, pipe.topics, partitions=3)
    with running(pipe, "gateway", "streams", "sink-tempo"):
        yield pipe


class Tee:
    """Records each OTLP/HTTP request body, then forwards it to the gateway."""

    def __init__(self, gateway: str) -> None:
        self.gateway = gateway
        self.requests: list[ExportTraceServiceRequest] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/traces", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _forward(self, request: web.Request) -> web.Response:
        body = await request.read()
        raw = (
            gzip.decompress(body)
            if request.headers.get("Content-Encoding") == "gzip"
            else body
        )
        self.requests.append(ExportTraceServiceRequest.FromString(raw))
        headers = {
            k: v
            for k, v in request.headers.items()
            if k in ("Content-Type", "Content-Encoding", "Authorization")
        }
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{self.gateway}/v1/traces", data=body, headers=headers
            ) as answer,
        ):
            return web.Response(
                status=answer.status,
                body=await answer.read(),
                content_type=answer.content_type,
            )

    def spans_by_trace(self) -> dict[str, dict[str, Span]]:
        found: dict[str, dict[str, Span]] = {}
        for request in self.requests:
            for resource_spans in request.resource_spans:
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        trace = found.setdefault(span.trace_id.hex(), {})
                        trace[span.span_id.hex()] = span
        return found


def kept_spans(
    bootstrap: str, topic: str, group: str, costs: dict[str, Any] | None = None
) -> dict[str, set[str]]:
    """Span ids per trace on the sampled topic, read until it goes quiet.

    ``costs``, when given, receives each kept span's cost record by span id.
    """
    codec = schemas.codec(schemas.SPAN_BATCH)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    kept: dict[str, set[str]] = {}
    deadline = time.monotonic() + 120
    last_new = time.monotonic()
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None or message.error():
                if kept and time.monotonic() - last_new > 10:
                    break
                continue
            batch = codec.decode(message.value())
            kept.setdefault(batch["trace_id"], set()).update(
                s["span_id"] for s in batch["spans"]
            )
            if costs is not None:
                costs.update((s["span_id"], s["cost"]) for s in batch["spans"])
            last_new = time.monotonic()
    finally:
        consumer.close()
    return kept


ERROR = trace_pb2.Status.STATUS_CODE_ERROR


def with_cost(span: Span, cost: dict[str, Any] | None) -> Span:
    """The span as the Tempo sink sends it: its cost record as attributes."""
    copy = Span()
    copy.CopyFrom(span)
    copy.attributes.extend(cost_attributes(cost))
    return copy


async def test_kept_traces_in_the_trace_backend_equal_what_the_apps_sent(
    pipeline_to_tempo: Pipeline, tee: Tee, kafka_bootstrap: str, group_id: str
) -> None:
    tenant = f"e2e-{uuid.uuid4().hex[:8]}"
    results = await run_workload(WorkloadSettings(otlp_endpoint=tee.url, tenant=tenant))
    assert all(r.ok for r in results), results
    emitted = tee.spans_by_trace()

    costs: dict[str, Any] = {}
    kept = await asyncio.to_thread(
        kept_spans, kafka_bootstrap, pipeline_to_tempo.sampled_topic, group_id, costs
    )

    assert kept, "the sampler kept no trace"
    assert set(kept) <= set(emitted)
    errors = {
        trace_id
        for trace_id, spans in emitted.items()
        if any(
            s.status.code == trace_pb2.Status.STATUS_CODE_ERROR for s in spans.values()
        )
    }
    assert errors and errors <= set(kept), "every trace with an error is kept"
    priced = 0
    for trace_id, span_ids in kept.items():
        assert span_ids == set(emitted[trace_id]), "a kept trace is complete"
        stored = await asyncio.to_thread(fetch_trace, trace_id, len(span_ids))
        back = {
            span.span_id.hex(): span
            for rs in stored.resource_spans
            for ss in rs.scope_spans
            for span in ss.spans
        }
        assert set(back) == span_ids
        for span_id, span in emitted[trace_id].items():
            expected = with_cost(span, costs[span_id])
            assert canonical(back[span_id]) == canonical(expected)
            keys = {kv.key for kv in back[span_id].attributes}
            priced += "llmobs.cost.total" in keys
    assert priced, "priced spans carry their cost into the trace backend"


RECOMPUTED = """
SELECT date_trunc('minute', end_time) AS bucket, service_name AS service,
       coalesce(provider, '') AS provider,
       coalesce(request_model, response_model, '') AS model, operation,
       count(*) AS requests,
       count(*) FILTER (WHERE status_code = 'ERROR' OR error_type IS NOT NULL)
           AS errors,
       coalesce(sum(input_tokens), 0) AS input_tokens,
       coalesce(sum(output_tokens), 0) AS output_tokens,
       coalesce(sum(cache_read_tokens), 0) AS cache_read_tokens,
       coalesce(sum(reasoning_tokens), 0) AS reasoning_tokens,
       coalesce(sum(cost_total), 0) AS cost
FROM llm_spans
WHERE tenant = $1
  AND operation IN ('chat', 'text_completion', 'generate_content', 'embeddings')
GROUP BY 1, 2, 3, 4, 5
"""

STORED = """
SELECT bucket, service, provider, model, operation, requests, errors,
       input_tokens, output_tokens, cache_read_tokens, reasoning_tokens, cost
FROM llm_metrics_1m WHERE tenant = $1
"""


def by_key(rows: list[asyncpg.Record]) -> dict[tuple[object, ...], tuple[object, ...]]:
    return {tuple(r.values())[:5]: tuple(r.values())[5:] for r in rows}


async def metrics_match(database_url: str, tenant: str, timeout_s: float) -> tuple:
    """Wait until llm_metrics_1m equals the recomputation from llm_spans."""
    conn = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            want = by_key(await conn.fetch(RECOMPUTED, tenant))
            got = by_key(await conn.fetch(STORED, tenant))
            if (want and want == got) or time.monotonic() > deadline:
                return want, got
            await asyncio.sleep(1.0)
    finally:
        await conn.close()


async def latency_quantiles_within_the_sketch_bound(
    database_url: str, tenant: str
) -> None:
    """p50 and p95 of each minute, from its sketch, against the raw spans."""
    conn = await asyncpg.connect(database_url)
    try:
        minutes = await conn.fetch(
            "SELECT bucket, service, provider, model, operation, latency_sketch,"
            " llmobs_sketch_quantile(latency_sketch, 0.5) AS p50,"
            " llmobs_sketch_quantile(latency_sketch, 0.95) AS p95"
            " FROM llm_metrics_1m WHERE tenant = $1",
            tenant,
        )
        assert minutes
        for minute in minutes:
            durations = await conn.fetch(
                "SELECT extract(epoch FROM end_time - start_time)::float8 AS s"
                " FROM llm_spans WHERE tenant = $1"
                " AND date_trunc('minute', end_time) = $2 AND service_name = $3"
                " AND coalesce(provider, '') = $4"
                " AND coalesce(request_model, response_model, '') = $5"
                " AND operation = $6",
                tenant,
                *list(minute.values())[:5],
            )
            values = [r["s"] for r in durations]
            for q, column in ((0.5, "p50"), (0.95, "p95")):
                exact = exact_quantile(values, q)
                # 1% in the sketch, of durations the table holds rounded to
                # the microsecond at both ends: the two errors add up.
                bound = RELATIVE_ACCURACY * exact + 2e-6
                assert abs(minute[column] - exact) <= bound, (column, minute)
    finally:
        await conn.close()


async def test_minute_metrics_equal_a_recomputation_from_every_span(
    kafka_bootstrap: str, database_url: str
) -> None:
    pipe = Pipeline(extra_env={"LLMOBS_GRACE_S": "1", "LLMOBS_CLOSE_TICK_S": "0.5"})
    ensure_topics(kafka_bootstrap, pipe.topics, partitions=3)
    tenant = f"e2e-{uuid.uuid4().hex[:8]}"
    with running(pipe, "gateway", "streams", "sink", "sink-metrics"):
        settings = WorkloadSettings(otlp_endpoint=pipe.endpoint, tenant=tenant)
        results = await run_workload(settings)
        assert all(r.ok for r in results), results
        exported = sum(r.spans_exported for r in results)
        assert len(await rows_of(database_url, tenant, exported)) == exported
        # Windows close a minute and a grace second after they open.
        want, got = await metrics_match(database_url, tenant, timeout_s=150)
    assert want, "the workload made model requests"
    assert got == want
    await latency_quantiles_within_the_sketch_bound(database_url, tenant)

    # A second metrics sink replays every window from the start: the rows
    # must not change, windows delivered twice are counted once.
    replay = Pipeline(run_id=pipe.run_id, extra_env={"LLMOBS_MAX_IDLE_S": "5"})
    replay_env = replay.env("sink-metrics-replay")
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "llmobs.cli", "sink-metrics"],
        env=replay_env,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    _, after = await metrics_match(database_url, tenant, timeout_s=1)
    assert after == want
