"""Versioned SQL migrations of the sink's tables, and TimescaleDB detection.

Migrations are the files ``sinks/migrations/NNNN_<name>.sql``. When the
database runs TimescaleDB, ``NNNN_<name>.timescale.sql`` is used instead where
it exists. Which flavour a database gets is decided once: a fresh database
(no migration applied yet) gets TimescaleDB if the extension is available; an
existing one keeps the flavour it was created with (extension installed or
not), so later migrations never meet tables of the other flavour.

Each migration runs in its own transaction and is recorded in
``schema_migrations``; the whole run holds an advisory lock so that workers
starting together do not race.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

# Any constant shared by every process that migrates this schema.
ADVISORY_LOCK_KEY = 0x6C6C6D6F6273  # "llmobs"

_FILE = re.compile(
    r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)(?P<ts>\.timescale)?\.sql$"
)


@dataclass(frozen=True)
class Migration:
    """One schema version, with its plain and optional TimescaleDB script."""

    version: int
    name: str
    plain: Path
    timescale: Path | None = None

    def script(self, timescale: bool) -> Path:
        """The file to run on a database of the given flavour."""
        if timescale and self.timescale is not None:
            return self.timescale
        return self.plain


@dataclass
class MigrationResult:
    """What a migration run did."""

    timescale: bool
    applied: list[Migration] = field(default_factory=list)
    current_version: int = 0


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """All migrations under ``directory``, oldest first."""
    plain: dict[int, Path] = {}
    timescale: dict[int, Path] = {}
    names: dict[int, str] = {}
    for path in directory.glob("*.sql"):
        match = _FILE.match(path.name)
        if match is None:
            log.warning("ignoring %s: not named NNNN_<name>[.timescale].sql", path)
            continue
        version = int(match["version"])
        if names.setdefault(version, match["name"]) != match["name"]:
            raise ValueError(f"two migrations share version {version:04d}")
        (timescale if match["ts"] else plain)[version] = path
    missing = sorted(set(timescale) - set(plain))
    if missing:
        raise ValueError(f"timescale variant without plain file: {missing}")
    return [Migration(v, names[v], plain[v], timescale.get(v)) for v in sorted(plain)]


async def migrate(
    conn: asyncpg.Connection, directory: Path = MIGRATIONS_DIR
) -> MigrationResult:
    """Apply the pending migrations on ``conn``; safe to run concurrently."""
    migrations = discover(directory)

    # Session-level lock: released in finally, or by the server if we die.
    await conn.execute("SELECT pg_advisory_lock($1)", ADVISORY_LOCK_KEY)
    try:
        await conn.execute(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version    integer     PRIMARY KEY,
                name       text        NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """
        )
        done = {
            r["version"]
            for r in await conn.fetch("SELECT version FROM schema_migrations")
        }
        timescale = await _choose_flavour(conn, fresh=not done)
        result = MigrationResult(
            timescale=timescale, current_version=max(done, default=0)
        )

        for migration in migrations:
            if migration.version in done:
                continue
            script = migration.script(timescale)
            log.info(
                "applying migration %04d %s (%s)",
                migration.version,
                migration.name,
                script.name,
            )
            async with conn.transaction():
                await conn.execute(script.read_text())
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
            result.applied.append(migration)
            result.current_version = migration.version
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", ADVISORY_LOCK_KEY)
    return result


async def timescale_installed(conn: asyncpg.Connection) -> bool:
    """True when the timescaledb extension is installed in this database."""
    found = await conn.fetchval(
        "SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'"
    )
    return found is not None


async def timescale_available(conn: asyncpg.Connection) -> bool:
    """True when the server could install the timescaledb extension."""
    found = await conn.fetchval(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
    )
    return found is not None


async def spans_partitioned(conn: asyncpg.Connection) -> bool:
    """True when llm_spans is natively partitioned, so the sink adds partitions."""
    kind = await conn.fetchval(
        "SELECT relkind FROM pg_class WHERE oid = to_regclass('llm_spans')"
    )
    return bool(kind == b"p" or kind == "p")


async def _choose_flavour(conn: asyncpg.Connection, fresh: bool) -> bool:
    if await timescale_installed(conn):
        return True
    if not fresh or not await timescale_available(conn):
        return False
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except asyncpg.PostgresError as exc:
        # Available but unusable, typically not in shared_preload_libraries.
        log.warning(
            "timescaledb is available but cannot be created (%s); "
            "using plain PostgreSQL partitioning",
            exc,
        )
        return False
    log.info("timescaledb extension created")
    return True
