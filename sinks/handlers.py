"""Defaults for sink handlers that buffer nothing between batches."""

from __future__ import annotations

import asyncio

from confluent_kafka import TopicPartition

from sinks.consumer import Position


class WriteThrough:
    """Hooks of a handler whose batches are durable once ``write`` returns.

    With nothing held between batches there is nothing to flush on a tick or
    at shutdown, and nothing to forget when partitions are revoked.
    """

    async def tick(self, stop: asyncio.Event) -> list[TopicPartition] | None:
        return None

    async def close(self, stop: asyncio.Event) -> list[TopicPartition] | None:
        return None

    def revoke(self, positions: set[Position]) -> None:
        return None
