"""The metrics store keeps plain PostgreSQL in shape: partitions, pruning."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import uuid
from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest

from sinks.metrics.store import MetricsStore
from sinks.metrics.worker import MetricsHandler
from streams.metrics.window import PartitionWindows
from tests.streams.metrics.spans import batch, span

pytestmark = pytest.mark.integration


def records_in(month: dt.datetime, tenant: str) -> list[dict[str, Any]]:
    end_ns = int(month.timestamp()) * 10**9 + 90 * 10**9
    windows = PartitionWindows("llm.spans[0]", 60, grace_s=0)
    windows.apply(0, batch(tenant, [span(random.Random(1), end_ns)]))
    windows.close(now_ms=end_ns // 10**6 + 10 * 60_000)
    return windows.outbox


async def test_a_partition_created_by_another_replica_meanwhile_is_no_error(
    db: asyncpg.Connection, database_url: str
) -> None:
    # The fault: two replicas creating the month's partition at once made
    # one fail with a duplicate in the catalog, inside its batch, and crash.
    year = random.randrange(1900, 1960)
    month = dt.datetime(year, random.randrange(1, 13), 1, tzinfo=dt.UTC)
    name = f"llm_metrics_1m_p{month:%Y%m}"
    upper = (month + dt.timedelta(days=32)).replace(day=1)
    other = await asyncpg.connect(database_url)
    store = MetricsStore(db)
    await store.prepare()
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    try:
        creating = other.transaction()
        await creating.start()
        await other.execute(
            f"CREATE TABLE {name} PARTITION OF llm_metrics_1m FOR VALUES FROM"
            f" ('{month:%Y-%m-%d} 00:00+00') TO ('{upper:%Y-%m-%d} 00:00+00')"
        )
        adding = asyncio.create_task(store.add(records_in(month, tenant)))
        await asyncio.sleep(0.5)
        await creating.commit()

        added = await asyncio.wait_for(adding, 30)

        assert len(added) == 1
        rows = await db.fetchval(
            "SELECT count(*) FROM llm_metrics_1m WHERE tenant = $1", tenant
        )
        assert rows == 1
    finally:
        await other.close()
        await db.execute(f"DROP TABLE IF EXISTS {name}")


async def test_this_and_next_month_have_partitions_before_any_record(
    db: asyncpg.Connection,
) -> None:
    store = MetricsStore(db)

    await store.prepare()

    this_month = dt.datetime.now(dt.UTC).replace(day=1)
    next_month = (this_month + dt.timedelta(days=32)).replace(day=1)
    for month in (this_month, next_month):
        name = f"llm_metrics_1m_p{month:%Y%m}"
        assert await db.fetchval("SELECT to_regclass($1) IS NOT NULL", name)


async def test_identities_past_the_retention_are_pruned(
    db: asyncpg.Connection,
) -> None:
    # The fault: llm_metrics_contributions grew forever.
    prefix = f"prune-{uuid.uuid4().hex[:8]}"
    await db.execute(
        "INSERT INTO llm_metrics_contributions"
        " (contribution_id, bucket, kind, written_at)"
        " SELECT $1 || n, now(), 'window', now() - (n || ' days')::interval"
        " FROM generate_series(1, 30) AS n",
        prefix,
    )
    store = MetricsStore(db)
    await store.prepare()

    await store.maintain(dt.timedelta(days=14))

    left = await db.fetch(
        "SELECT contribution_id FROM llm_metrics_contributions"
        " WHERE contribution_id LIKE $1 || '%'",
        prefix,
    )
    assert sorted(int(r[0][len(prefix) :]) for r in left) == list(range(1, 14))
    await db.execute(
        "DELETE FROM llm_metrics_contributions WHERE contribution_id LIKE $1 || '%'",
        prefix,
    )


class Added:
    """A store that adds every record, and nothing to Redis or Kafka."""

    async def add(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return records


class Uncounted:
    async def count(self, records: list[dict[str, Any]], ids: list[str]) -> int:
        return 0

    async def crossings(self, records: list[dict[str, Any]]) -> list[Any]:
        return []


async def test_ack_to_metric_latency_stays_bounded_whatever_the_records() -> None:
    # The fault: one float per record kept forever, never read.
    handler = MetricsHandler(Added(), Uncounted(), None, "alerts")  # type: ignore[arg-type]
    record = records_in(dt.datetime(2025, 6, 1, tzinfo=dt.UTC), "t")[0]
    record["max_received_unix_nano"] = 1
    items = [SimpleNamespace(payload=record, dead=False)] * 5000

    for _ in range(4):
        await handler.write(items, asyncio.Event())  # type: ignore[arg-type]

    assert handler.ack_to_metric_s.count == 20_000
    assert len(handler.ack_to_metric_s.bins) <= 2
    assert "ack to metric p50" in handler.progress()
