"""The metrics sink against the real Kafka, PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
import redis.asyncio as aioredis
from confluent_kafka import Consumer, Producer

import schemas
from llmobs import topics
from llmobs.kafka import producer_config
from sinks.metrics.live import LiveCounters, nano_units
from sinks.metrics.settings import MetricsSinkSettings
from sinks.metrics.worker import MetricsSink
from streams.metrics.sketch import RELATIVE_ACCURACY, Sketch, exact_quantile
from streams.metrics.window import PartitionWindows
from tests.sinks.test_postgres import read_all
from tests.streams.metrics.spans import batch, span, truth

pytestmark = pytest.mark.integration

WINDOW_S = 60
T0_NS = 1_750_000_020 * 10**9


def windows_of(tenant: str, rng: random.Random) -> tuple[list[dict], list[dict]]:
    """Records of two input partitions (with a late correction), and the batches."""
    batches = []
    records = []
    for partition in (0, 1):
        windows = PartitionWindows(f"llm.spans[{partition}]", WINDOW_S, grace_s=5)
        for offset in range(40):
            end_ns = T0_NS + rng.randint(0, 2 * 60 * 10**9)
            b = batch(tenant, [span(rng, end_ns) for _ in range(3)])
            batches.append(b)
            windows.apply(offset, b)
            if offset == 30:
                windows.close(now_ms=T0_NS // 10**6 + 10 * 60_000)
        windows.close(now_ms=T0_NS // 10**6 + 11 * 60_000)
        records += windows.outbox
    return records, batches


def produce(bootstrap: str, topic: str, records: list[dict[str, Any]]) -> None:
    codec = schemas.codec("metric_window")
    producer = Producer(producer_config(bootstrap))
    for record in records:
        producer.produce(
            topic, key=record["tenant"].encode(), value=codec.encode(record)
        )
    assert producer.flush(30) == 0


async def run_sink(settings: MetricsSinkSettings) -> MetricsSink:
    sink = MetricsSink(settings)
    await asyncio.wait_for(sink.run(asyncio.Event()), timeout=90)
    return sink


@pytest.fixture
def sink_settings(
    kafka_bootstrap: str, database_url: str, new_topic: Callable[..., str]
) -> Callable[..., MetricsSinkSettings]:
    prefix = f"llmobs-test-{uuid.uuid4().hex[:8]}"
    metrics_topic = new_topic("metrics", 2)
    alerts_topic = new_topic("alerts", 1)

    def make(**overrides: Any) -> MetricsSinkSettings:
        values: dict[str, Any] = {
            "kafka_bootstrap": kafka_bootstrap,
            "metrics_topic": metrics_topic,
            "alerts_topic": alerts_topic,
            "group_id": f"test-group-{uuid.uuid4().hex[:8]}",
            "database_url": database_url,
            "redis_prefix": prefix,
            "flush_interval_s": 0.2,
            "max_batch_records": 7,
            "max_idle_s": 3.0,
        }
        values.update(overrides)
        return MetricsSinkSettings(**values)

    return make


async def stored(database_url: str, tenant: str) -> dict[tuple[Any, ...], Any]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT *, extract(epoch FROM bucket)::bigint * 1000 AS ms"
            " FROM llm_metrics_1m WHERE tenant = $1",
            tenant,
        )
        p95 = await conn.fetchval(
            "SELECT llmobs_sketch_quantile(llmobs_sketch_agg(latency_sketch), 0.95)"
            " FROM llm_metrics_1d WHERE tenant = $1",
            tenant,
        )
    finally:
        await conn.close()
    out = {
        (
            r["ms"],
            r["tenant"],
            r["service"],
            r["provider"],
            r["model"],
            r["operation"],
            r["currency"],
        ): r
        for r in rows
    }
    out[("p95",)] = p95
    return out


def check(got: dict[tuple[Any, ...], Any], batches: list[dict[str, Any]]) -> None:
    expected = truth(batches, WINDOW_S)
    p95 = got.pop(("p95",))
    assert set(got) == set(expected)
    for key, want in expected.items():
        row = got[key]
        for name in ("requests", "errors", "input_tokens", "output_tokens"):
            assert row[name] == want[name], (key, name)
        assert row["cost"] == want["cost"]
        sketch = Sketch.from_json(orjson.loads(row["latency_sketch"]))
        exact = exact_quantile(want["latencies"], 0.95)
        assert abs(sketch.quantile(0.95) - exact) <= RELATIVE_ACCURACY * exact * 1.00001
    every = [x for row in expected.values() for x in row["latencies"]]
    exact = exact_quantile(every, 0.95)
    assert abs(p95 - exact) <= RELATIVE_ACCURACY * exact * 1.00001


async def test_windows_add_up_once_across_partitions_corrections_and_replays(
    kafka_bootstrap: str, database_url: str, sink_settings: Callable[..., Any]
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:10]}"
    records, batches = windows_of(tenant, random.Random(11))
    assert {r["kind"] for r in records} == {"window", "correction"}
    settings = sink_settings()
    # Every record twice: a stream worker re-sending its outbox after a crash.
    produce(kafka_bootstrap, settings.metrics_topic, records + records[::2])

    sink = await run_sink(settings)
    assert sink.handler is not None
    assert sink.handler.records_added == len(records)
    check(await stored(database_url, tenant), batches)

    # A restarted sink with a fresh group replays the whole topic: no change.
    again = await run_sink(sink_settings())
    assert again.handler is not None and again.handler.records_added == 0
    check(await stored(database_url, tenant), batches)

    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        day = "2025-06-15"
        live = await client.hgetall(
            f"{settings.redis_prefix}:usage:{day}:tenant:{tenant}"
        )
        assert int(live[b"requests"]) == len(batches) * 3
        # Each record's cost rounded to the nano-unit, then summed exactly.
        want_nano = sum(nano_units(r["cost"]) for r in records)
        assert int(live[b"cost_usd_nano"]) == want_nano
        assert Decimal(live[b"cost_usd"].decode()) == Decimal(want_nano) / 10**9
        assert b"cost" not in live
    finally:
        await client.aclose()


async def test_a_lost_database_connection_is_reopened_not_fatal(
    kafka_bootstrap: str, database_url: str, sink_settings: Callable[..., Any]
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:10]}"
    records, batches = windows_of(tenant, random.Random(21))
    half = len(records) // 2
    settings = sink_settings(max_idle_s=None)
    produce(kafka_bootstrap, settings.metrics_topic, records[:half])
    sink = MetricsSink(settings)
    stop = asyncio.Event()
    running = asyncio.create_task(sink.run(stop))

    async def added(count: int) -> None:
        while sink.handler is None or sink.handler.records_added < count:
            assert not running.done(), running
            await asyncio.sleep(0.1)

    try:
        await asyncio.wait_for(added(half), 60)
        assert sink.handler is not None
        lost = sink.handler.store.conn
        admin = await asyncpg.connect(database_url)
        try:
            await admin.execute(
                "SELECT pg_terminate_backend($1)", lost.get_server_pid()
            )
        finally:
            await admin.close()
        produce(kafka_bootstrap, settings.metrics_topic, records[half:])

        await asyncio.wait_for(added(len(records)), 60)

        assert sink.handler.store.conn is not lost
    finally:
        stop.set()
        await asyncio.wait_for(running, 60)
    check(await stored(database_url, tenant), batches)


async def test_budget_crossing_alerts_once_per_threshold(
    kafka_bootstrap: str, sink_settings: Callable[..., Any], tmp_path: Path
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:10]}"
    records, _ = windows_of(tenant, random.Random(12))
    total = sum((r["cost"] for r in records), Decimal(0))
    budgets = tmp_path / "budgets.yaml"
    budgets.write_text(
        f"budgets:\n"
        f"  - name: {tenant}-daily\n    tenant: {tenant}\n    period: day\n"
        f"    limit: {float(total) / 2}\n    thresholds: [0.5, 1.0, 4.0]\n"
        f"  - name: {tenant}-requests\n    tenant: {tenant}\n    period: month\n"
        f"    metric: requests\n    limit: 1000000\n"
    )
    settings = sink_settings(budgets_file=str(budgets))
    produce(kafka_bootstrap, settings.metrics_topic, records)
    await run_sink(settings)
    # Replayed by a second sink: the crossings are known, nothing is re-sent.
    await run_sink(sink_settings(budgets_file=str(budgets)))

    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": f"read-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([settings.alerts_topic])
    alerts = []
    try:
        for message in consumer.consume(100, timeout=10):
            if message.error() is None:
                alerts.append(orjson.loads(message.value()))
    finally:
        consumer.close()
    assert sorted(a["threshold"] for a in alerts) == [0.5, 1.0]
    assert {a["budget"] for a in alerts} == {f"{tenant}-daily"}
    assert all(a["period_id"] == "2025-06-15" for a in alerts)


async def test_a_record_redis_refuses_is_skipped_not_fatal() -> None:
    client = aioredis.Redis.from_url("redis://127.0.0.1:6379/0")
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    live = LiveCounters(client, prefix, 60, [])
    records, _ = windows_of(f"t-{uuid.uuid4().hex[:8]}", random.Random(3))
    good, bad = dict(records[0]), dict(records[1])
    # HINCRBY refuses a count past a 64-bit integer.
    bad["input_tokens"] = 2**63
    try:
        counted = await live.count([bad, good], ["bad", "good"])
        assert counted == 1
        assert await client.exists(f"{prefix}:applied:good")
    finally:
        await client.aclose()


async def test_keys_that_join_alike_with_a_bar_are_both_stored(
    kafka_bootstrap: str, database_url: str, sink_settings: Callable[..., Any]
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:10]}"
    rng = random.Random(13)
    windows = PartitionWindows("llm.spans[0]", WINDOW_S, grace_s=0)
    end_ns = T0_NS + 10**9
    windows.apply(0, batch(tenant, [span(rng, end_ns, provider="c")], service="a|b"))
    windows.apply(1, batch(tenant, [span(rng, end_ns, provider="b|c")], service="a"))
    windows.close(now_ms=T0_NS // 10**6 + 10 * 60_000)
    first, second = windows.outbox
    # Same model and first offset: joined with "|", the two identities agree.
    second["model"] = first["model"]
    second["first_offset"] = first["first_offset"]
    settings = sink_settings()
    produce(kafka_bootstrap, settings.metrics_topic, [first, second])

    sink = await run_sink(settings)

    assert sink.handler is not None and sink.handler.records_added == 2
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT service, provider, requests FROM llm_metrics_1m WHERE tenant = $1",
            tenant,
        )
    finally:
        await conn.close()
    assert sorted(tuple(r) for r in rows) == [("a", "b|c", 1), ("a|b", "c", 1)]


class Killed(BaseException):
    """The process dies (SIGKILL) while the producer is flushing."""


class DyingProducer:
    def produce(self, *_args: Any, **_kwargs: Any) -> None:
        return None

    def flush(self, _timeout_s: float) -> int:
        raise Killed


class RecordingProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, dict[str, Any]]] = []

    def produce(self, _topic: str, key: bytes, value: bytes, **_: Any) -> None:
        self.sent.append((key, orjson.loads(value)))

    def flush(self, _timeout_s: float) -> int:
        return 0


async def test_an_alert_claimed_by_a_killed_sink_is_sent_on_replay() -> None:
    from sinks.metrics.budgets import Budget
    from sinks.metrics.worker import MetricsHandler
    from streams.metrics.window import identity

    client = aioredis.Redis.from_url("redis://127.0.0.1:6379/0")
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    budget = Budget(f"{tenant}-daily", "day", Decimal("1e-9"), tenant=tenant)
    live = LiveCounters(client, f"test-{uuid.uuid4().hex[:8]}", 60, [budget])
    records, _ = windows_of(tenant, random.Random(14))
    try:
        await live.count(records, [identity(r) for r in records])

        # Killed between the claim and Kafka's confirmation.
        dying = MetricsHandler(None, live, DyingProducer(), "alerts")  # type: ignore[arg-type]
        with pytest.raises(Killed):
            await dying._alert(await live.crossings(records))

        # The restarted sink replays the batch: the crossing goes out.
        producer = RecordingProducer()
        again = MetricsHandler(None, live, producer, "alerts")  # type: ignore[arg-type]
        await again._alert(await live.crossings(records))
        await again._alert(await live.crossings(records))
    finally:
        await client.aclose()
    ((key, alert),) = producer.sent
    assert key == alert["alert_id"].encode()
    assert alert["alert_id"] == f"{tenant}-daily/2025-06-15/1.0"


async def live_counters(
    budgets: list[Any] | None = None,
) -> tuple[aioredis.Redis, LiveCounters]:
    client = aioredis.Redis.from_url("redis://127.0.0.1:6379/0")
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    return client, LiveCounters(client, prefix, 60, budgets or [])


async def test_a_record_that_would_overflow_a_later_counter_writes_nothing() -> None:
    # The fault: the script set the marker and the first increments before
    # a later HINCRBY failed, so the record stayed half counted for good.
    client, live = await live_counters()
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    records, _ = windows_of(tenant, random.Random(15))
    record = records[0]
    key = live.usage_key("2025-06-15", tenant, None)
    try:
        await client.hset(key, "tokens", 2**63 - 10)

        assert await live.count([record], ["r1"]) == 0

        assert await client.hgetall(key) == {b"tokens": str(2**63 - 10).encode()}
        assert not await client.exists(f"{live.prefix}:applied:r1")
        await client.hset(key, "tokens", 0)
        assert await live.count([record], ["r1"]) == 1
        assert int(await client.hget(key, "requests")) == record["requests"]
    finally:
        await client.aclose()


async def test_costs_add_up_exactly_where_floats_drift() -> None:
    # The fault: HINCRBYFLOAT summed costs in binary floating point.
    client, live = await live_counters()
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    records, _ = windows_of(tenant, random.Random(16))
    copies = [{**records[0], "cost": Decimal("0.1")} for _ in range(10)]
    key = live.usage_key("2025-06-15", tenant, None)
    try:
        assert await live.count(copies, [f"c{i}" for i in range(10)]) == 10

        assert await client.hget(key, "cost_usd") == b"1.000000000"
        assert int(await client.hget(key, "cost_usd_nano")) == 10**9
    finally:
        await client.aclose()


async def test_a_budget_reached_exactly_alerts() -> None:
    from sinks.metrics.budgets import Budget

    tenant = f"t-{uuid.uuid4().hex[:8]}"
    budget = Budget("exact", "day", Decimal("0.3"), tenant=tenant)
    client, live = await live_counters([budget])
    records, _ = windows_of(tenant, random.Random(17))
    copies = [{**records[0], "cost": Decimal("0.1")} for _ in range(3)]
    try:
        await live.count(copies, [f"e{i}" for i in range(3)])

        (alert,) = await live.crossings(copies)
    finally:
        await client.aclose()
    # 0.1 + 0.1 + 0.1 is 0.30000000000000004 in floats, 0.3 here.
    assert (alert["used"], alert["limit"]) == ("0.3", "0.3")


async def test_a_float_cost_of_an_older_version_carries_over() -> None:
    client, live = await live_counters()
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    records, _ = windows_of(tenant, random.Random(18))
    record = dict(records[0])
    record["cost"] = Decimal("0.25")
    key = live.usage_key("2025-06-15", tenant, None)
    try:
        await client.hset(key, mapping={"cost": "1.5", "requests": 3})

        await live.count([record], ["old"])

        stored = await client.hgetall(key)
    finally:
        await client.aclose()
    assert stored[b"cost_usd"] == b"1.750000000"
    assert b"cost" not in stored


async def test_names_holding_key_separators_get_keys_of_their_own() -> None:
    # The fault: tenant "*" wrote into the all-tenants hash, and ":" in a
    # name let (tenant "a:b", provider "c") share a hash with (tenant "a",
    # provider "b:c").
    client, live = await live_counters()
    records, _ = windows_of("t", random.Random(19))
    day = "2025-06-15"
    star = {**records[0], "tenant": "*", "provider": "p", "model": "m"}
    colon_tenant = {**records[0], "tenant": "a:b", "provider": "c", "model": "m"}
    colon_provider = {**records[0], "tenant": "a", "provider": "b:c", "model": "m"}
    try:
        await live.count([star, colon_tenant, colon_provider], ["s", "ct", "cp"])

        everyone = await client.hget(live.usage_key(day, None, ("p", "m")), "requests")
        first = live.usage_key(day, "a:b", ("c", "m"))
        second = live.usage_key(day, "a", ("b:c", "m"))
        assert first != second
        assert int(await client.hget(first, "requests")) == records[0]["requests"]
        assert int(await client.hget(second, "requests")) == records[0]["requests"]
    finally:
        await client.aclose()
    assert int(everyone) == records[0]["requests"]
    assert live.usage_key(day, "acme", ("openai", "gpt-4o")).endswith(
        ":model:acme:openai/gpt-4o"
    )


async def test_costs_in_euros_and_dollars_are_stored_in_rows_of_their_own(
    kafka_bootstrap: str, database_url: str, sink_settings: Callable[..., Any]
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:10]}"
    rng = random.Random(20)
    spans = []
    for code, amount in (("USD", "0.25"), ("EUR", "0.5"), ("EUR", "0.75")):
        s = span(rng, T0_NS + 10**9, provider="openai", request_model="gpt-4o")
        s["cost"] = {
            "status": "priced",
            "currency": code,
            "total_cost": Decimal(amount),
        }
        spans.append(s)
    windows = PartitionWindows("llm.spans[0]", WINDOW_S, grace_s=0)
    windows.apply(0, batch(tenant, spans))
    windows.close(now_ms=T0_NS // 10**6 + 10 * 60_000)
    settings = sink_settings()
    produce(kafka_bootstrap, settings.metrics_topic, windows.outbox)

    await run_sink(settings)

    conn = await asyncpg.connect(database_url)
    try:
        minute = await conn.fetch(
            "SELECT currency, requests, cost FROM llm_metrics_1m WHERE tenant = $1",
            tenant,
        )
        daily = await conn.fetch(
            "SELECT currency, requests, cost FROM llm_cost_by_model_daily"
            " WHERE tenant = $1",
            tenant,
        )
    finally:
        await conn.close()
    want = [("EUR", 2, Decimal("1.25")), ("USD", 1, Decimal("0.25"))]
    assert sorted(tuple(r) for r in minute) == want
    assert sorted(tuple(r) for r in daily) == want


async def test_top_conversations_count_model_requests_only(database_url: str) -> None:
    tenant = f"t-{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(database_url)
    # Rolled back at the end: the rows exist for this test only.
    transaction = conn.transaction()
    await transaction.start()
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS llm_spans_p20250115 PARTITION OF"
            " llm_spans FOR VALUES FROM ('2025-01-15 00:00:00+00')"
            " TO ('2025-01-16 00:00:00+00')"
        )
        for i, (operation, cost) in enumerate(
            (("chat", "0.1"), ("invoke_agent", None), ("execute_tool", None))
        ):
            await conn.execute(
                "INSERT INTO llm_spans (tenant, trace_id, span_id, name, kind,"
                " service_name, start_time, end_time, duration_ms, status_code,"
                " attributes, resource_attributes, events, operation,"
                " conversation_id, cost_total, cost_currency) VALUES ($1, 't',"
                " $2, 'n', 'k', 's', '2025-01-15 10:00+00', '2025-01-15 10:01+00',"
                " 1, 'OK', '{}', '{}', '[]', $3, 'conv', $4::numeric, $5)",
                tenant,
                str(i),
                operation,
                cost,
                "USD" if cost else None,
            )
        rows = await conn.fetch(
            "SELECT currency, cost, requests FROM llm_top_conversations_by_cost"
            " WHERE tenant = $1",
            tenant,
        )
    finally:
        await transaction.rollback()
        await conn.close()
    assert [tuple(r) for r in rows] == [("USD", Decimal("0.1"), 1)]


async def test_a_record_the_database_refuses_is_dead_lettered_alone(
    kafka_bootstrap: str,
    database_url: str,
    sink_settings: Callable[..., Any],
    new_topic: Callable[..., str],
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:10]}"
    records, _ = windows_of(tenant, random.Random(5))
    good = records[:3]
    # PostgreSQL text cannot hold a NUL character.
    bad = {**records[3], "model": "gpt\x00-4o"}
    dlq = new_topic("metrics-dlq", 1)
    settings = sink_settings(dlq_topic=dlq)
    produce(kafka_bootstrap, settings.metrics_topic, [good[0], bad, *good[1:]])

    sink = await run_sink(settings)

    assert sink.handler is not None and sink.handler.records_added == len(good)
    got = await stored(database_url, tenant)
    got.pop(("p95",))
    assert sum(row["requests"] for row in got.values()) == sum(
        r["requests"] for r in good
    )
    [dead] = read_all(kafka_bootstrap, dlq, 1)
    headers = {k: v.decode() for k, v in dead.headers()}
    assert headers[topics.HEADER_DLQ_REASON] == "rejected_by_database"
    assert schemas.codec("metric_window").decode(dead.value())["model"] == "gpt\x00-4o"
