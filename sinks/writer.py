"""One PostgreSQL connection that writes batches of rows into llm_spans.

A write is one attempt: ensure the day partitions exist, then in one
transaction COPY the rows into a per-connection staging table and insert them
with ON CONFLICT DO NOTHING, so a replayed batch inserts nothing twice. The
caller retries attempts that fail with a ``TRANSIENT_ERRORS`` error; the
connection is reopened when it was lost.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import date, timedelta

import asyncpg

from llmobs.errors import RetriableStageError, StageError
from sinks import schema
from sinks.rows import (
    COLUMN_NAMES,
    CREATE_STAGING,
    INSERT_FROM_STAGING,
    STAGING_TABLE,
    Row,
    row_day,
)
from sinks.settings import masked_url

log = logging.getLogger(__name__)

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    RetriableStageError,
    asyncpg.PostgresConnectionError,
    asyncpg.TransactionRollbackError,
    asyncpg.TooManyConnectionsError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
)
# What the data of a record causes, not the state of the database: the
# record is set aside (after isolating it from its batch), never retried.
REJECTED_DATA: tuple[type[asyncpg.PostgresError], ...] = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    asyncpg.ProgramLimitExceededError,
)


class ConnectionLost(RetriableStageError):
    """The connection closed under an operation; the next attempt reconnects."""


class SpanWriter:
    """Writes row batches into llm_spans over one lazily opened connection."""

    def __init__(
        self, database_url: str, connect_timeout_s: float, migrate_on_start: bool
    ) -> None:
        self._database_url = database_url
        self._connect_timeout_s = connect_timeout_s
        self._migrate = migrate_on_start
        self._conn: asyncpg.Connection | None = None
        self._partitioned = False
        self._known_days: set[date] = set()

    async def write(self, rows: list[Row]) -> int:
        """Insert ``rows`` in one transaction; returns how many were new."""
        conn = await self._connection()
        try:
            if self._partitioned:
                await self._ensure_partitions(conn, {row_day(r) for r in rows})

            async with conn.transaction():
                await conn.copy_records_to_table(
                    STAGING_TABLE, records=rows, columns=COLUMN_NAMES
                )
                status = await conn.execute(INSERT_FROM_STAGING)
        except asyncpg.CheckViolationError as exc:
            # A row with no partition: one was dropped behind the cache's back.
            self._known_days.clear()
            raise RetriableStageError("a row had no partition; re-checking") from exc
        except asyncpg.InterfaceError as exc:
            if not conn.is_closed():
                raise
            self._conn = None
            raise ConnectionLost(f"connection closed: {exc}") from exc
        except BaseException:
            self._drop_if_broken(conn)
            raise
        return int(status.rpartition(" ")[2])

    async def close(self) -> None:
        """Close the connection if one is open."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await close_quietly(conn)

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        self._conn = None
        conn = await asyncpg.connect(
            self._database_url, timeout=self._connect_timeout_s
        )
        try:
            await self._prepare(conn)
        except BaseException:
            conn.terminate()
            raise
        self._conn = conn
        return conn

    async def _prepare(self, conn: asyncpg.Connection) -> None:
        if self._migrate:
            result = await schema.migrate(conn)
            self._migrate = False
            log.info(
                "schema at version %d (%d applied now, timescaledb=%s)",
                result.current_version,
                len(result.applied),
                result.timescale,
            )
        exists = await conn.fetchval("SELECT to_regclass('llm_spans') IS NOT NULL")
        if not exists:
            raise StageError("table llm_spans does not exist; run `llmobs migrate`")
        self._partitioned = await schema.spans_partitioned(conn)
        await conn.execute(CREATE_STAGING)
        log.info(
            "connected to %s (llm_spans %s)",
            masked_url(self._database_url),
            "partitioned by day" if self._partitioned else "is a hypertable",
        )

    async def _ensure_partitions(
        self, conn: asyncpg.Connection, days: set[date]
    ) -> None:
        # Each CREATE commits on its own, outside the batch transaction, so
        # the exclusive lock it takes on llm_spans is held only for the DDL.
        for day in sorted(days - self._known_days):
            name = partition_name(day)
            lower = f"{day.isoformat()} 00:00:00+00"
            upper = f"{(day + timedelta(days=1)).isoformat()} 00:00:00+00"
            try:
                await conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF llm_spans "
                    f"FOR VALUES FROM ('{lower}') TO ('{upper}')"
                )
            except (asyncpg.DuplicateTableError, asyncpg.UniqueViolationError):
                log.debug("partition %s created concurrently", name)
            self._known_days.add(day)

    def _drop_if_broken(self, conn: asyncpg.Connection) -> None:
        if conn.is_closed():
            self._conn = None
            return
        # Cancelled mid-protocol: the connection state is unknown.
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            conn.terminate()
            self._conn = None


async def close_quietly(conn: asyncpg.Connection) -> None:
    """Close ``conn``; terminate it when it does not close cleanly."""
    if conn.is_closed():
        return
    try:
        await conn.close(timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        conn.terminate()


def partition_name(day: date) -> str:
    """The daily partition of llm_spans that holds rows starting on ``day``."""
    return f"llm_spans_p{day:%Y%m%d}"
