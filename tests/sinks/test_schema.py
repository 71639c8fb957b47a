"""Versioned migrations: discovery, a fresh database, re-runs and races."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from sinks import schema


def test_discover_pairs_plain_and_timescale_files() -> None:
    migrations = schema.discover()

    first = migrations[0]
    assert (first.version, first.name) == (1, "llm_spans")
    assert first.plain.name == "0001_llm_spans.sql"
    assert first.timescale is not None
    assert first.script(timescale=True).name == "0001_llm_spans.timescale.sql"
    assert first.script(timescale=False).name == "0001_llm_spans.sql"
    assert [m.version for m in migrations] == sorted(m.version for m in migrations)


def test_discover_rejects_a_timescale_file_without_plain_one(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("SELECT 1")
    (tmp_path / "0002_b.timescale.sql").write_text("SELECT 1")

    with pytest.raises(ValueError, match="without plain"):
        schema.discover(tmp_path)


@pytest.fixture
async def fresh_database(database_url: str) -> AsyncIterator[str]:
    """A new empty database on the local server, dropped afterwards."""
    name = f"llmobs_test_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(database_url)
    await admin.execute(f"CREATE DATABASE {name}")
    try:
        yield database_url.rsplit("/", 1)[0] + "/" + name
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


@pytest.mark.integration
async def test_migrations_apply_once_and_record_their_versions(
    fresh_database: str,
) -> None:
    conn = await asyncpg.connect(fresh_database)
    try:
        first = await schema.migrate(conn)
        second = await schema.migrate(conn)

        recorded = await conn.fetch("SELECT version, name FROM schema_migrations")
        partitioned = await schema.spans_partitioned(conn)
        default_partition = await conn.fetchval(
            "SELECT partdefid FROM pg_partitioned_table "
            "WHERE partrelid = 'llm_spans'::regclass"
        )
        indexes = await conn.fetchval(
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'llm_spans'"
        )
    finally:
        await conn.close()

    assert [m.version for m in first.applied] == [1, 2, 3, 4]
    assert first.timescale is False
    assert second.applied == []
    assert second.current_version == first.current_version == 4
    assert sorted((r["version"], r["name"]) for r in recorded) == [
        (1, "llm_spans"),
        (2, "span_cost"),
        (3, "llm_metrics"),
        (4, "metrics_currency"),
    ]
    assert partitioned is True
    assert default_partition == 0  # rows without a day partition fail loudly
    assert indexes == 4  # the natural key and three lookups


@pytest.mark.integration
async def test_concurrent_migrations_apply_each_version_once(
    fresh_database: str,
) -> None:
    conns = [await asyncpg.connect(fresh_database) for _ in range(4)]
    try:
        results = await asyncio.gather(*(schema.migrate(c) for c in conns))
        count = await conns[0].fetchval("SELECT count(*) FROM schema_migrations")
    finally:
        for conn in conns:
            await conn.close()

    assert sorted(len(r.applied) for r in results) == [0, 0, 0, 4]
    assert count == 4


@pytest.mark.integration
async def test_failed_migration_leaves_no_version_behind(
    fresh_database: str, tmp_path: Path
) -> None:
    (tmp_path / "0001_good.sql").write_text("CREATE TABLE good (x int);")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE half (x int); SELECT 1/0;")
    conn = await asyncpg.connect(fresh_database)
    try:
        with pytest.raises(asyncpg.DivisionByZeroError):
            await schema.migrate(conn, tmp_path)
        versions = await conn.fetch("SELECT version FROM schema_migrations")
        half = await conn.fetchval("SELECT to_regclass('half') IS NOT NULL")
        # Asked from another session: the lock is reentrant within one.
        other = await asyncpg.connect(fresh_database)
        lock_free = await other.fetchval(
            "SELECT pg_try_advisory_lock($1)", schema.ADVISORY_LOCK_KEY
        )
        await other.close()
    finally:
        await conn.close()

    assert [r["version"] for r in versions] == [1]
    assert half is False
    assert lock_free is True
