"""Session-wide fixtures: the real local services and fresh names per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import asyncpg
import pytest

from llmobs.kafka import DEFAULT_BOOTSTRAP
from llmobs.topics import ensure_topics
from sinks import schema

KAFKA_BOOTSTRAP = os.environ.get("LLMOBS_KAFKA_BOOTSTRAP", DEFAULT_BOOTSTRAP)
DATABASE_URL = os.environ.get(
    "LLMOBS_DATABASE_URL", "postgresql://llmobs:llmobs@127.0.0.1:5432/llmobs"
)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    return KAFKA_BOOTSTRAP


@pytest.fixture(scope="session")
def database_url() -> str:
    return DATABASE_URL


@pytest.fixture
def new_topic(kafka_bootstrap: str) -> Iterator[Callable[..., str]]:
    """Factory: a fresh topic per call, created on the real broker."""

    def make(prefix: str = "test", partitions: int = 3) -> str:
        name = unique(prefix)
        ensure_topics(kafka_bootstrap, (name,), partitions=partitions)
        return name

    yield make


@pytest.fixture
def group_id() -> str:
    return unique("test-group")


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the migrated database."""
    conn = await asyncpg.connect(database_url)
    await schema.migrate(conn)
    yield conn
    await conn.close()
