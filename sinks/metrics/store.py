"""Adds MetricWindow records to llm_metrics_1m and its rollups, once each.

One transaction per batch: the identities of the records are inserted into
llm_metrics_contributions with ON CONFLICT DO NOTHING, and only the records
whose identity was new are summed into the minute, hour and day rows. A
replayed batch therefore adds nothing, and records of several partitions or
corrections for the same window and key add up.

On plain PostgreSQL the store also keeps the tables in shape: the monthly
partitions of llm_metrics_1m are created ahead of the batches that need them,
each in its own short transaction (another replica creating the same one at
the same moment is success), and identities older than the retention are
deleted, which is safe once no record written then can be read again.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Iterable
from decimal import Decimal
from typing import Any

import asyncpg
import orjson

from llmobs.errors import StageError
from sinks.writer import ConnectionLost
from streams.metrics.sketch import Sketch
from streams.metrics.window import identity

log = logging.getLogger(__name__)

KEY_COLUMNS = ("tenant", "service", "provider", "model", "operation", "currency")
SUM_COLUMNS = (
    "requests",
    "errors",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "reasoning_tokens",
    "cost",
    "priced_requests",
    "latency_sum_s",
    "ttft_count",
    "ttft_sum_s",
    "timed_output_tokens",
    "timed_output_s",
)
SKETCH_COLUMNS = ("latency_sketch", "ttft_sketch")
COLUMNS = ("bucket", *KEY_COLUMNS, *SUM_COLUMNS, *SKETCH_COLUMNS)
ROLLUPS = {"llm_metrics_1h": "hour", "llm_metrics_1d": "day"}
PRUNE_SLICE_ROWS = 10_000

Row = dict[str, Any]


def bucket_of(record: dict[str, Any]) -> dt.datetime:
    return dt.datetime.fromtimestamp(record["window_start_ms"] / 1000, dt.UTC)


def truncate(moment: dt.datetime, unit: str) -> dt.datetime:
    if unit == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    if unit == "day":
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return moment.replace(second=0, microsecond=0)


def combine(records: Iterable[dict[str, Any]], unit: str) -> list[Row]:
    """Records summed per (bucket truncated to ``unit``, key)."""
    rows: dict[tuple[Any, ...], Row] = {}
    for record in records:
        bucket = truncate(bucket_of(record), unit)
        key = (bucket, *(record[c] for c in KEY_COLUMNS))
        row = rows.get(key)
        if row is None:
            row = rows[key] = {"bucket": bucket, **{c: record[c] for c in KEY_COLUMNS}}
            row.update({c: 0 for c in SUM_COLUMNS})
            row["cost"] = Decimal(0)
            row["latency_sketch"] = Sketch()
            row["ttft_sketch"] = Sketch()
        for column in SUM_COLUMNS:
            row[column] += record[column]
        for column in SKETCH_COLUMNS:
            row[column].merge(Sketch.from_record(record[column]))
    return list(rows.values())


def _upsert_sql(table: str) -> str:
    names = ", ".join(COLUMNS)
    params = ", ".join(
        f"${i}::jsonb" if c in SKETCH_COLUMNS else f"${i}"
        for i, c in enumerate(COLUMNS, 1)
    )
    sums = ", ".join(f"{c} = t.{c} + EXCLUDED.{c}" for c in SUM_COLUMNS)
    sketches = ", ".join(
        f"{c} = llmobs_sketch_merge(t.{c}, EXCLUDED.{c})" for c in SKETCH_COLUMNS
    )
    return (
        f"INSERT INTO {table} AS t ({names}) VALUES ({params}) "
        f"ON CONFLICT (bucket, {', '.join(KEY_COLUMNS)}) DO UPDATE SET "
        f"{sums}, {sketches}, updated_at = now()"
    )


def _args(row: Row) -> tuple[Any, ...]:
    return tuple(
        orjson.dumps(row[c].to_json()).decode() if c in SKETCH_COLUMNS else row[c]
        for c in COLUMNS
    )


class MetricsStore:
    """Writes batches of records into one database."""

    def __init__(
        self,
        conn: asyncpg.Connection,
        connect: Callable[[], Awaitable[asyncpg.Connection]] | None = None,
    ) -> None:
        self.conn = conn
        self._connect = connect
        self.rollup_tables: list[str] = []
        self._partitions: set[str] = set()
        self._partitioned = False

    async def prepare(self) -> None:
        """Learn the flavour: partitioned minute table, rollups kept by us."""
        kinds = dict(
            await self.conn.fetch(
                "SELECT relname, relkind::text FROM pg_class WHERE relname = ANY($1)"
                " AND relnamespace = 'public'::regnamespace",
                ["llm_metrics_1m", *ROLLUPS],
            )
        )
        self._partitioned = kinds.get("llm_metrics_1m") == "p"
        # Continuous aggregates are views; only plain tables are ours to add to.
        self.rollup_tables = [t for t in ROLLUPS if kinds.get(t) == "r"]
        await self.maintain(None)

    async def reopen(self) -> None:
        """Replace a lost connection with a new one, prepared again."""
        if self._connect is None:
            raise StageError("the metrics store lost its database connection")
        conn = await self._connect()
        self.conn, old = conn, self.conn
        old.terminate()
        self._partitions.clear()
        await self.prepare()

    async def maintain(self, retention: dt.timedelta | None) -> int:
        """Create this and next month's partitions; prune identities older
        than ``retention``. Returns the identities deleted."""
        if not self._partitioned:
            # TimescaleDB: chunks and the retention policy do both.
            return 0
        this_month = truncate(dt.datetime.now(dt.UTC), "day").replace(day=1)
        next_month = (this_month + dt.timedelta(days=32)).replace(day=1)
        await self._ensure_partitions({this_month, next_month})
        if retention is None:
            return 0
        return await self._prune(dt.datetime.now(dt.UTC) - retention)

    async def add(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Add the records not added before; returns those newly added.

        A connection found closed is reopened first; one that closes during
        the call raises ConnectionLost, for the caller to try again.
        """
        if not records:
            return []
        if self.conn.is_closed():
            await self.reopen()
        try:
            return await self._add(records)
        except asyncpg.InterfaceError as exc:
            if not self.conn.is_closed():
                raise
            raise ConnectionLost(f"connection closed: {exc}") from exc

    async def _add(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        by_id = {identity(r): r for r in records}

        # Step 1: partitions committed on their own, never inside the batch.
        if self._partitioned:
            await self._ensure_partitions({month_of(r) for r in records})

        # Step 2: identities and sums in one transaction.
        async with self.conn.transaction():
            inserted = await self.conn.fetch(
                "INSERT INTO llm_metrics_contributions (contribution_id, bucket, kind)"
                " SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[])"
                " ON CONFLICT DO NOTHING RETURNING contribution_id",
                list(by_id),
                [bucket_of(r) for r in by_id.values()],
                [r["kind"] for r in by_id.values()],
            )
            new = [by_id[row["contribution_id"]] for row in inserted]
            if not new:
                return []
            minute = combine(new, "minute")
            await self.conn.executemany(
                _upsert_sql("llm_metrics_1m"), [_args(r) for r in minute]
            )
            for table in self.rollup_tables:
                rows = combine(new, ROLLUPS[table])
                await self.conn.executemany(
                    _upsert_sql(table), [_args(r) for r in rows]
                )
        return new

    async def _ensure_partitions(self, months: set[dt.datetime]) -> None:
        # Each CREATE commits on its own (the exclusive lock it takes on
        # llm_metrics_1m is held only for the DDL).
        for month in sorted(months):
            name = f"llm_metrics_1m_p{month:%Y%m}"
            if name in self._partitions:
                continue
            upper = (month + dt.timedelta(days=32)).replace(day=1)
            lower_sql = month.strftime("%Y-%m-%d 00:00:00+00")
            upper_sql = upper.strftime("%Y-%m-%d 00:00:00+00")
            try:
                await self.conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF llm_metrics_1m"
                    f" FOR VALUES FROM ('{lower_sql}') TO ('{upper_sql}')"
                )
            except (asyncpg.DuplicateTableError, asyncpg.UniqueViolationError):
                # Another replica created it between our check and our insert.
                log.debug("partition %s created concurrently", name)
            self._partitions.add(name)

    async def _prune(self, written_before: dt.datetime) -> int:
        # In slices, each its own short transaction, not one long delete.
        deleted = 0
        while True:
            status = await self.conn.execute(
                "DELETE FROM llm_metrics_contributions WHERE ctid = ANY(ARRAY("
                " SELECT ctid FROM llm_metrics_contributions WHERE written_at < $1"
                " LIMIT $2))",
                written_before,
                PRUNE_SLICE_ROWS,
            )
            count = int(status.split()[-1])
            deleted += count
            if count < PRUNE_SLICE_ROWS:
                return deleted


def month_of(record: dict[str, Any]) -> dt.datetime:
    return truncate(bucket_of(record), "day").replace(day=1)
