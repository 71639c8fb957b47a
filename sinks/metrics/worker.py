"""The metrics sink worker: llm.metrics.1m into PostgreSQL and Redis.

Per batch, in order: the records are added to llm_metrics_1m and its rollups
(once each, by identity), counted into the Redis live counters (once each,
by a marker), then the budgets they touch are checked and each new crossing
is produced to llm.alerts; only then are the offsets committed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import Any

import asyncpg
import orjson
import redis
from confluent_kafka import KafkaError, Message, Producer, TopicPartition

import schemas
from llmobs.errors import SchemaError, StageError
from llmobs.kafka import producer_config
from llmobs.retry import Backoff, retry_async
from llmobs.settings import describe
from sinks import schema
from sinks.consumer import BackendUnavailable, BatchConsumer, Item, LoopSettings
from sinks.handlers import WriteThrough
from sinks.metrics.budgets import load_budgets
from sinks.metrics.live import LiveCounters
from sinks.metrics.settings import MetricsSinkSettings
from sinks.metrics.store import MetricsStore
from sinks.settings import masked_url
from sinks.writer import REJECTED_DATA, TRANSIENT_ERRORS, close_quietly
from streams.metrics.agent import METRIC_WINDOW
from streams.metrics.sketch import Sketch
from streams.metrics.window import identity

log = logging.getLogger(__name__)

ALERT_FLUSH_TIMEOUT_S = 30.0
MAINTAIN_EVERY_S = 3600.0
WRITE_BACKOFF = Backoff(initial_s=0.5, max_s=10.0, deadline_s=120.0)


class MetricsHandler(WriteThrough):
    """Decodes MetricWindow records; stores, counts and checks budgets."""

    def __init__(
        self,
        store: MetricsStore,
        live: LiveCounters,
        producer: Any,
        alerts_topic: str,
        retention_days: float = 14.0,
    ) -> None:
        self.store = store
        self.live = live
        self.producer = producer
        self.alerts_topic = alerts_topic
        self.records_added = 0
        self.records_replayed = 0
        self.alerts_sent = 0
        self.contributions_pruned = 0
        # Seconds from the newest span's acceptance to its metric being
        # stored: a sketch, bounded whatever the number of records.
        self.ack_to_metric_s = Sketch()
        self._codec = schemas.codec(METRIC_WINDOW)
        self._retention = dt.timedelta(days=retention_days)
        self._maintained_s = time.monotonic()

    def counters(self) -> list[tuple[str, str, float]]:
        return [
            (
                "windows_added",
                "Window records added to llm_metrics_1m.",
                self.records_added,
            ),
            (
                "windows_replayed",
                "Window records found already added, and skipped.",
                self.records_replayed,
            ),
            ("alerts_sent", "Budget alerts published.", self.alerts_sent),
        ]

    def decode(self, message: Message) -> Item:
        try:
            record = self._codec.decode(message.value() or b"")
        except SchemaError as exc:
            item = Item(message)
            item.kill("schema_error", str(exc))
            return item
        return Item(message, record, size=1)

    async def write(
        self, items: list[Item], stop: asyncio.Event
    ) -> list[TopicPartition] | None:
        live = [item for item in items if not item.dead]
        if not live:
            return None

        # Step 1: durable in PostgreSQL, each identity added once.
        try:
            new = await self._add_retrying([item.payload for item in live], stop)
        except REJECTED_DATA as exc:
            log.warning(
                "batch of %d metric windows rejected (%s); adding record by record",
                len(live),
                type(exc).__name__,
            )
            new = await self._add_each(live, stop)
        records = [item.payload for item in live if not item.dead]
        self.records_added += len(new)
        self.records_replayed += len(records) - len(new)
        now_ns = time.time_ns()
        for record in new:
            if record["max_received_unix_nano"]:
                self.ack_to_metric_s.add(
                    (now_ns - record["max_received_unix_nano"]) / 1e9
                )

        # Step 2: live counters; every record, as Redis may have missed some.
        ids = [identity(r) for r in records]
        try:
            await retry_async(
                "counting in Redis",
                lambda: self.live.count(records, ids),
                (redis.ConnectionError, redis.TimeoutError),
                WRITE_BACKOFF,
                stop,
            )
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise BackendUnavailable(f"Redis unavailable: {exc}") from exc

        # Step 3: alerts confirmed by Kafka before the offsets move on.
        await self._alert(await self.live.crossings(records))
        return None

    async def tick(self, stop: asyncio.Event) -> list[TopicPartition] | None:
        """Now and then: partitions ahead of need, old identities pruned."""
        if time.monotonic() - self._maintained_s < MAINTAIN_EVERY_S:
            return None
        self._maintained_s = time.monotonic()
        try:
            self.contributions_pruned += await self.store.maintain(self._retention)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            # Nothing waits on it: the next round tries again.
            log.warning("metrics table maintenance failed: %s", exc)
        return None

    def progress(self) -> str:
        p50 = self.ack_to_metric_s.quantile(0.5)
        p99 = self.ack_to_metric_s.quantile(0.99)
        if p50 is None or p99 is None:
            return f"{self.records_added} windows added"
        return (
            f"{self.records_added} windows added, "
            f"ack to metric p50 {p50:.1f}s p99 {p99:.1f}s"
        )

    async def _add_retrying(
        self, records: list[dict[str, Any]], stop: asyncio.Event
    ) -> list[dict[str, Any]]:
        try:
            return await retry_async(
                "adding metric windows",
                lambda: self.store.add(records),
                TRANSIENT_ERRORS,
                WRITE_BACKOFF,
                stop,
            )
        except TRANSIENT_ERRORS as exc:
            # Held by the loop and handed back: every step is idempotent.
            raise BackendUnavailable(
                f"database unavailable: {type(exc).__name__}: {exc}"
            ) from exc

    async def _add_each(
        self, items: list[Item], stop: asyncio.Event
    ) -> list[dict[str, Any]]:
        """Add record by record; set aside those the database refuses, so
        that one of them cannot stop the partition."""
        new: list[dict[str, Any]] = []
        for item in items:
            try:
                new += await self._add_retrying([item.payload], stop)
            except REJECTED_DATA as exc:
                item.kill(
                    "rejected_by_database",
                    f"{exc.sqlstate} {type(exc).__name__}: {exc}",
                )
        return new

    async def _alert(self, alerts: list[dict[str, Any]]) -> None:
        due = [a for a in alerts if await self.live.due(a)]
        if not due:
            return
        errors: list[KafkaError] = []

        def delivered(error: KafkaError | None, _message: Message) -> None:
            if error is not None:
                errors.append(error)

        # Step 1: produced while claimed as pending; a crash from here on
        # leaves them pending, and the replayed batch sends them again.
        for alert in due:
            self.producer.produce(
                self.alerts_topic,
                key=alert["alert_id"].encode(),
                value=orjson.dumps(alert),
                on_delivery=delivered,
            )
            log.warning(
                "budget %s: %s %s reached %.0f%% of %s for %s",
                alert["budget"],
                alert["metric"],
                alert["used"],
                alert["threshold"] * 100,
                alert["limit"],
                alert["period_id"],
            )
        remaining = await asyncio.to_thread(self.producer.flush, ALERT_FLUSH_TIMEOUT_S)
        if remaining or errors:
            raise StageError(f"alerts not confirmed by {self.alerts_topic}: {errors}")

        # Step 2: confirmed by Kafka, so never sent again.
        for alert in due:
            await self.live.sent(alert)
        self.alerts_sent += len(due)


class MetricsSink:
    """Runs the metrics handler over llm.metrics.1m."""

    def __init__(self, settings: MetricsSinkSettings) -> None:
        self.settings = settings
        self.budgets = load_budgets(settings.budgets_file)
        self.handler: MetricsHandler | None = None
        self.loop: BatchConsumer | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Write until ``stop`` is set (or the topic stays idle), then close."""
        import redis.asyncio as aioredis

        s = self.settings
        log.info("metrics sink starting: %s", describe(s))

        async def connect() -> asyncpg.Connection:
            return await asyncpg.connect(s.database_url, timeout=10)

        try:
            conn = await connect()
        except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
            raise StageError(
                f"cannot connect to {masked_url(s.database_url)}: {exc}"
            ) from exc
        client = aioredis.Redis.from_url(s.redis_url)
        store = MetricsStore(conn, connect)
        try:
            if s.migrate_on_start:
                await schema.migrate(conn)
            await store.prepare()
            live = LiveCounters(client, s.redis_prefix, s.live_ttl_s, self.budgets)
            producer = Producer(producer_config(s.kafka_bootstrap))
            self.handler = MetricsHandler(
                store, live, producer, s.alerts_topic, s.contributions_retention_days
            )
            self.loop = BatchConsumer(
                "metrics sink",
                LoopSettings(
                    kafka_bootstrap=s.kafka_bootstrap,
                    topic=s.metrics_topic,
                    group_id=s.group_id,
                    dlq_topic=s.dlq_topic,
                    max_batch_size=s.max_batch_records,
                    flush_interval_s=s.flush_interval_s,
                    max_idle_s=s.max_idle_s,
                    metrics_address=s.metrics_address,
                ),
                self.handler,
            )
            await self.loop.run(stop)
        finally:
            await close_quietly(store.conn)
            await client.aclose()
        log.info(
            "metrics sink stopped: %d records added, %d replays absorbed, "
            "%d alerts, %d identities pruned; %s",
            self.handler.records_added,
            self.handler.records_replayed,
            self.handler.alerts_sent,
            self.handler.contributions_pruned,
            self.handler.progress(),
        )
