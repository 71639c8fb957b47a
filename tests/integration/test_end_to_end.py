"""The whole pipeline as operators run it: gateway, streams, sink processes.

Each test starts the three ``llmobs`` processes with their own topics,
consumer groups and ports, sends real input, and reads the rows back from
PostgreSQL.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from confluent_kafka import Consumer, Producer

from bench.processes import Pipeline, running
from llmobs import synthetic
from llmobs.topics import HEADER_DLQ_REASON, ensure_topics
from llmobs.workload.cli import WorkloadSettings, run_workload

pytestmark = pytest.mark.integration


@pytest.fixture
def pipeline(kafka_bootstrap: str) -> Iterator[Pipeline]:
    pipe = Pipeline()
    ensure_topics(
        kafka_bootstrap,
        (pipe.input_topic, pipe.spans_topic, pipe.dlq_topic),
        partitions=3,
    )
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
