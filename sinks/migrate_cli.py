"""``llmobs migrate``: create or upgrade the sink's tables in PostgreSQL."""

from __future__ import annotations

import argparse

from llmobs import settings as config
from sinks.settings import DatabaseSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    config.add_flags(parser, DatabaseSettings)


def run(args: argparse.Namespace) -> int:
    import asyncio

    settings = config.load(DatabaseSettings, args)
    asyncio.run(_migrate(settings))
    return 0


async def _migrate(settings: DatabaseSettings) -> None:
    import asyncpg

    from llmobs.errors import StageError
    from sinks import schema
    from sinks.settings import masked_url

    target = masked_url(settings.database_url)
    try:
        conn = await asyncpg.connect(settings.database_url, timeout=10)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise StageError(f"cannot connect to {target}: {exc}") from exc
    try:
        result = await schema.migrate(conn)
    except asyncpg.PostgresError as exc:
        raise StageError(f"migration failed on {target}: {exc}") from exc
    finally:
        await conn.close()

    flavour = "TimescaleDB" if result.timescale else "plain PostgreSQL (no TimescaleDB)"
    print(f"database {target}: {flavour}")
    for migration in result.applied:
        script = migration.script(result.timescale).name
        print(f"  applied {migration.version:04d} {migration.name} ({script})")
    if not result.applied:
        print("  nothing to apply")
    print(f"schema version {result.current_version}")
