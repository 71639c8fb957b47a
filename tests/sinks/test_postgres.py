"""The sink worker against the real Kafka and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
from confluent_kafka import Consumer, TopicPartition
from relay import relay
from spanbatches import BASE_NS, encode, genai, new_trace_id, run_sink, span, span_batch

from llmobs import topics
from llmobs.kafka import consumer_config
from sinks.postgres import PostgresSpanSink
from sinks.status import render
from sinks.writer import partition_name

pytestmark = pytest.mark.integration

DAY_NS = 86_400 * 10**9


async def spans_of(db: asyncpg.Connection, *trace_ids: str) -> list[asyncpg.Record]:
    return await db.fetch(
        "SELECT *, tableoid::regclass::text AS partition FROM llm_spans "
        "WHERE trace_id = ANY($1) ORDER BY span_id",
        list(trace_ids),
    )


def committed_offsets(
    bootstrap: str, group: str, topic: str, partitions: int
) -> list[int]:
    consumer = Consumer(consumer_config(bootstrap, group))
    try:
        wanted = [TopicPartition(topic, p) for p in range(partitions)]
        return [tp.offset for tp in consumer.committed(wanted, timeout=10)]
    finally:
        consumer.close()


def end_offsets(bootstrap: str, topic: str, partitions: int) -> list[int]:
    consumer = Consumer(consumer_config(bootstrap, "unused-watermarks"))
    try:
        return [
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(partitions)
        ]
    finally:
        consumer.close()


def read_all(bootstrap: str, topic: str, count: int) -> list[Any]:
    consumer = Consumer(consumer_config(bootstrap, f"reader-{new_trace_id()}"))
    consumer.subscribe([topic])
    messages: list[Any] = []
    try:
        for _ in range(60):
            messages += [m for m in consumer.consume(count, 0.5) if m.error() is None]
            if len(messages) >= count:
                break
    finally:
        consumer.close()
    return messages


async def test_rows_land_with_typed_values_and_jsonb(
    db: asyncpg.Connection,
    new_topic: Callable[..., str],
    produce: Any,
    sink_settings: Any,
) -> None:
    topic = new_topic("sink-rows", 1)
    trace_id = new_trace_id()
    chat = span(
        "a" * 16,
        status_code="ERROR",
        status_message="rate limited",
        genai=genai(error_type="429", finish_reasons=["length", "stop"]),
    )
    tool = span(
        "b" * 16,
        parent_span_id="a" * 16,
        name="tool",
        genai=None,
        kind="SPAN_KIND_INTERNAL",
        links_count=2,
    )
    produce(topic, [encode(span_batch(trace_id, [chat, tool]))])

    sink = await run_sink(sink_settings(topic))

    assert sink.written_spans == 2
    first, second = await spans_of(db, trace_id)
    assert first["tenant"] == "acme"
    assert first["service_name"] == "checkout"
    assert first["start_time"] == datetime(2025, 1, 15, 10, 0, tzinfo=UTC)
    assert first["duration_ms"] == 1500.0
    assert first["status_code"] == "ERROR"
    assert first["status_message"] == "rate limited"
    assert first["provider"] == "openai"
    assert first["response_model"] == "gpt-4o-2024-08-06"
    assert first["input_tokens"] == 120
    assert first["cache_read_tokens"] == 100
    assert first["reasoning_tokens"] == 7
    assert first["finish_reasons"] == ["length", "stop"]
    assert first["streaming"] is True
    assert first["error_type"] == "429"
    assert first["reported_cost"] == Decimal("0.0012")
    assert first["conventions"] == ["otel_genai", "openllmetry"]
    assert first["normalization_issues"] == ["tokens_as_string"]
    assert json.loads(first["genai_sources"]) == {
        "input_tokens": "gen_ai.usage.input_tokens"
    }
    assert json.loads(first["attributes"]) == {"gen_ai.system": "openai", "n": 2}
    assert json.loads(first["resource_attributes"]) == {"service.name": "checkout"}
    assert json.loads(first["events"])[0]["name"] == "first_token"
    assert first["received_at"] == datetime(2025, 1, 15, 10, 0, 2, tzinfo=UTC)
    assert first["source"] == "otlp_spans[0] 42"
    assert first["written_at"] is not None
    assert second["parent_span_id"] == "a" * 16
    assert second["kind"] == "SPAN_KIND_INTERNAL"
    assert second["links_count"] == 2
    assert second["provider"] is None and second["finish_reasons"] is None
    # jsonb, not text: the database can look inside it.
    n = await db.fetchval(
        "SELECT (attributes->>'n')::int FROM llm_spans WHERE trace_id = $1 "
        "AND span_id = $2",
        trace_id,
        "a" * 16,
    )
    assert n == 2


async def test_replay_with_a_new_group_inserts_nothing(
    db: asyncpg.Connection,
    new_topic: Callable[..., str],
    produce: Any,
    sink_settings: Any,
) -> None:
    topic = new_topic("sink-replay", 2)
    trace_ids = [new_trace_id() for _ in range(5)]
    produce(
        topic,
        [encode(span_batch(t, [span("a" * 16), span("b" * 16)])) for t in trace_ids],
    )

    first = await run_sink(sink_settings(topic))
    replay = await run_sink(sink_settings(topic, group_id=f"replay-{new_trace_id()}"))

    assert first.written_spans == 10
    assert replay.written_spans == 0
    assert replay.duplicate_spans == 10
    assert len(await spans_of(db, *trace_ids)) == 10


async def test_the_same_ids_under_two_tenants_are_two_spans(
    db: asyncpg.Connection,
    new_topic: Callable[..., str],
    produce: Any,
    sink_settings: Any,
) -> None:
    topic = new_topic("sink-tenants", 1)
    trace_id = new_trace_id()
    produce(
        topic,
        [
            encode(span_batch(trace_id, [span("c" * 16)], tenant=tenant))
            for tenant in ("team-a", "team-b")
        ],
    )

    sink = await run_sink(sink_settings(topic))

    assert sink.written_spans == 2
    rows = await spans_of(db, trace_id)
    assert sorted(r["tenant"] for r in rows) == ["team-a", "team-b"]


async def test_garbage_goes_to_dlq_and_later_records_are_written(
    db: asyncpg.Connection,
    new_topic: Callable[..., str],
    produce: Any,
    sink_settings: Any,
    kafka_bootstrap: str,
) -> None:
    topic = new_topic("sink-dlq-in", 1)
    dlq = new_topic("sink-dlq", 1)
    before, after = new_trace_id(), new_trace_id()
    produce(
        topic,
        [
            encode(span_batch(before, [span("a" * 16)])),
            b"not an avro record",
            encode(span_batch(after, [span("a" * 16)])),
        ],
    )

    sink = await run_sink(sink_settings(topic, dlq_topic=dlq))

    assert sink.dead_lettered == 1
    assert len(await spans_of(db, before, after)) == 2
    [dead] = read_all(kafka_bootstrap, dlq, 1)
    assert dead.value() == b"not an avro record"
    headers = {k: v.decode() for k, v in dead.headers()}
    assert headers[topics.HEADER_DLQ_REASON] == "schema_error"
    assert "single-object" in headers[topics.HEADER_DLQ_DETAIL]
    assert headers[topics.HEADER_DLQ_TOPIC] == topic
    assert headers[topics.HEADER_DLQ_PARTITION] == "0"
    assert headers[topics.HEADER_DLQ_OFFSET] == "1"
    assert committed_offsets(kafka_bootstrap, sink.settings.group_id, topic, 1) == [3]


async def test_record_the_database_rejects_is_dead_lettered_alone(
    db: asyncpg.Connection,
    new_topic: Callable[..., str],
    produce: Any,
    sink_settings: Any,
    kafka_bootstrap: str,
) -> None:
    topic = new_topic("sink-reject-in", 1)
    dlq = new_topic("sink-reject", 1)
    good, bad = new_trace_id(), new_trace_id()
    produce(
        topic,
        [
            encode(span_batch(good, [span("a" * 16)])),
            encode(span_batch(bad, [span("a" * 16, attributes_json="{not json")])),
        ],
    )

    sink = await run_sink(sink_settings(topic, dlq_topic=dlq))

    assert [r["trace_id"] for r in await spans_of(db, good, bad)] == [good]
    [dead] = read_all(kafka_bootstrap, dlq, 1)
    headers = {k: v.decode() for k, v in dead.headers()}
    assert headers[topics.HEADER_DLQ_REASON] == "rejected_by_database"
    assert headers[topics.HEADER_DLQ_OFFSET] == "1"
    assert sink.dead_lettered == 1


async def test_a_span_too_big_for_an_index_costs_only_itself(
    db: asyncpg.Connection,
    new_topic: Callable[..., str],
    produce: Any,
    sink_settings: Any,
    kafka_bootstrap: str,
) -> None:
    topic = new_topic("sink-limit-in", 1)
    dlq = new_topic("sink-limit", 1)
    trace_id = new_trace_id()
    # Random text does not compress: the index row outgrows its page.
    huge_model = secrets.token_hex(8000)
    oversize = genai(request_model=huge_model)
    spans = [span("a" * 16), span("b" * 16, genai=oversize), span("c" * 16)]
    produce(topic, [encode(span_batch(trace_id, spans))])

    sink = await run_sink(sink_settings(topic, dlq_topic=dlq))

    stored = [r["span_id"] for r in await spans_of(db, trace_id)]
    assert sorted(stored) == ["a" * 16, "c" * 16]
    [dead] = read_all(kafka_bootstrap, dlq, 1)
    headers = {k: v.decode() for k, v in dead.headers()}
    assert headers[topics.HEADER_DLQ_REASON] == "rejected_by_database"
    assert "1 of 3 spans refused" in headers[topics.HEADER_DLQ_DETAIL]
    assert "ProgramLimitExceeded" in headers[topics.HEADER_DLQ_DETAIL]
    assert sink.dead_lettered == 1


async def test_nul_characters_are_stored_replaced_not_dead_lettered(
    db: asyncpg.Connection,
    new_topic: Callable[..., str],
    produce: Any,
    sink_settings: Any,
    kafka_bootstrap: str,
) -> None:
    topic = new_topic("sink-nul-in", 1)
    dlq = new_topic("sink-nul", 1)
    trace_id = new_trace_id()
    spans = [
        span("a" * 16, name="chat\x00x", attributes_json='{"k": "v\\u0000w"}'),
        span("b" * 16),
    ]
    produce(topic, [encode(span_batch(trace_id, spans))])

    sink = await run_sink(sink_settings(topic, dlq_topic=dlq))

    rows = {r["span_id"]: r for r in await spans_of(db, trace_id)}
    assert set(rows) == {"a" * 16, "b" * 16}
    stored = await db.fetchval(
        "SELECT name || '|' || (attributes->>'k') FROM llm_spans "
        "WHERE trace_id = $1 AND span_id = $2",
        trace_id,
        "a" * 16,
    )
    assert stored == "chat\ufffdx|v\ufffdw"
    assert sink.dead_lettered == 0


async def test_offsets_are_committed_to_the_end_after_the_write(
    db: asyncpg.Connection,
    new_topic: Callable[..., str],
    produce: Any,
    sink_settings: Any,
    kafka_bootstrap: str,
) -> None:
    topic = new_topic("sink-commit", 3)
    trace_ids = [new_trace_id() for _ in range(30)]
    produce(topic, [encode(span_batch(t, [span("a" * 16)])) for t in trace_ids])

    sink = await run_sink(sink_settings(topic, max_batch_spans=7))

    ends = end_offsets(kafka_bootstrap, topic, 3)
    assert sum(ends) == 30
    assert committed_offsets(kafka_bootstrap, sink.settings.group_id, topic, 3) == ends
    assert sink.batches >= 5
    assert len(await spans_of(db, *trace_ids)) == 30


async def test_a_sink_holds_its_batch_while_the_database_is_away_then_writes_it(
    new_topic: Callable[..., str],
    produce: Any,
    sink_settings: Any,
    kafka_bootstrap: str,
    database_url: str,
    db: asyncpg.Connection,
) -> None:
    topic = new_topic("sink-nodb", 2)
    trace_ids = [new_trace_id() for _ in range(4)]
    produce(topic, [encode(span_batch(t, [span("a" * 16)])) for t in trace_ids])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    settings = sink_settings(
        topic,
        database_url=f"postgresql://llmobs:llmobs@127.0.0.1:{closed_port}/llmobs",
        db_retry_deadline_s=1.0,
        max_idle_s=None,
    )
    sink = PostgresSpanSink(settings)
    stop = asyncio.Event()
    running = asyncio.create_task(sink.run(stop))
    relayed = None
    try:

        async def until(condition: Callable[[], Any]) -> None:
            while not await condition():
                assert not running.done(), running
                await asyncio.sleep(0.2)

        async def holding() -> bool:
            return sink.loop.holding

        await asyncio.wait_for(until(holding), 30)
        assert sink.consumed_records == 4
        page = render(sink.loop, lag=None)
        assert 'llmobs_sink_backend_unavailable{sink="postgres"} 1' in page
        assert sink.loop.write_s() > 0
        assert committed_offsets(kafka_bootstrap, settings.group_id, topic, 2) == [
            -1001,
            -1001,
        ]

        url = urlsplit(database_url)
        relayed = await relay(closed_port, url.hostname or "", url.port or 5432)

        async def written() -> bool:
            return len(await spans_of(db, *trace_ids)) == 4

        await asyncio.wait_for(until(written), 60)
    finally:
        stop.set()
        await asyncio.wait_for(running, 60)
        if relayed is not None:
            relayed.close()
    ends = end_offsets(kafka_bootstrap, topic, 2)
    committed = committed_offsets(kafka_bootstrap, settings.group_id, topic, 2)
    assert [c if e else 0 for c, e in zip(committed, ends, strict=True)] == ends


async def test_partitions_of_two_days_are_created_on_demand(
    db: asyncpg.Connection,
    new_topic: Callable[..., str],
    produce: Any,
    sink_settings: Any,
) -> None:
    # Days no other test writes to, dropped first so the sink must create them.
    new_year_ns = 946_684_800 * 10**9  # 2000-01-01T00:00:00Z
    days = [datetime(1999, 12, 31).date(), datetime(2000, 1, 1).date()]
    for day in days:
        await db.execute(f"DROP TABLE IF EXISTS {partition_name(day)}")
    topic = new_topic("sink-days", 1)
    trace_id = new_trace_id()
    spans = [
        span("a" * 16, start_unix_nano=new_year_ns - 1000, end_unix_nano=new_year_ns),
        span("b" * 16, start_unix_nano=new_year_ns, end_unix_nano=new_year_ns + DAY_NS),
    ]
    produce(topic, [encode(span_batch(trace_id, spans))])

    try:
        sink = await run_sink(sink_settings(topic))

        assert sink.written_spans == 2
        stored = await spans_of(db, trace_id)
        assert [r["partition"] for r in stored] == [partition_name(d) for d in days]
    finally:
        for day in days:
            await db.execute(f"DROP TABLE IF EXISTS {partition_name(day)}")


async def test_spans_before_the_base_time_use_their_own_day(
    db: asyncpg.Connection,
    new_topic: Callable[..., str],
    produce: Any,
    sink_settings: Any,
) -> None:
    topic = new_topic("sink-base-day", 1)
    trace_id = new_trace_id()
    produce(topic, [encode(span_batch(trace_id, [span("a" * 16)]))])

    await run_sink(sink_settings(topic))

    [row] = await spans_of(db, trace_id)
    assert row["partition"] == "llm_spans_p20250115"
    assert (row["start_time"].timestamp() * 10**9) // DAY_NS == BASE_NS // DAY_NS


async def test_two_sinks_sharing_a_group_through_a_rebalance_lose_nothing(
    db: asyncpg.Connection,
    new_topic: Callable[..., str],
    produce: Any,
    sink_settings: Any,
    kafka_bootstrap: str,
) -> None:
    topic = new_topic("sink-rebalance", 4)
    trace_ids = [new_trace_id() for _ in range(2000)]
    spans = [span(f"{i:016x}") for i in range(5)]
    produce(topic, [encode(span_batch(t, spans)) for t in trace_ids])
    settings = sink_settings(topic, max_batch_spans=5, max_idle_s=4.0)

    async def late_start() -> Any:
        await asyncio.sleep(1.0)
        return await run_sink(settings)

    first, second = await asyncio.gather(run_sink(settings), late_start())

    stored = await db.fetchval(
        "SELECT count(*) FROM llm_spans WHERE trace_id = ANY($1)", trace_ids
    )
    assert stored == 10_000
    assert first.written_spans + second.written_spans == 10_000
    ends = end_offsets(kafka_bootstrap, topic, 4)
    assert committed_offsets(kafka_bootstrap, settings.group_id, topic, 4) == ends
