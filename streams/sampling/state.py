"""What the sampler keeps in its tables: the store it writes, keys, values.

Buffered batches are keyed by trace, input partition and offset, so that a
replayed input record overwrites its batch instead of doubling it; a value
is the batch as it arrived, after the time it arrived.
"""

from __future__ import annotations

import struct
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

ARRIVAL = struct.Struct(">d")


class StateStore(Protocol):
    """Durable state of the sampler, written per input partition.

    A write returns an awaitable that resolves once Kafka has it.
    ``decisions_on_disk`` says whether the decisions table may hold more
    than memory would (read with ``get_decision``, expired by a scan).
    """

    @property
    def decisions_on_disk(self) -> bool: ...

    def get_batch(self, partition: int, key: bytes) -> bytes | None: ...

    def put_batch(self, partition: int, key: bytes, value: bytes) -> Awaitable[Any]: ...

    def delete_batch(self, partition: int, key: bytes) -> Awaitable[Any]: ...

    def put_decision(
        self, partition: int, trace_id: str, value: bytes
    ) -> Awaitable[Any]: ...

    def delete_decision(self, partition: int, trace_id: str) -> Awaitable[Any]: ...

    def get_decision(self, partition: int, trace_id: str) -> bytes | None: ...

    def scan_decisions(
        self, partition: int, after: bytes | None, limit: int
    ) -> list[tuple[bytes, bytes]]:
        """Up to ``limit`` decisions of ``partition`` in key order after ``after``."""
        ...


def batch_key(trace_id: str, partition: int, offset: int) -> bytes:
    """Same input record, same key: replaying input overwrites, never doubles."""
    return f"{trace_id}/{partition}/{offset}".encode()


def parse_batch_key(key: bytes) -> tuple[str, int]:
    trace_id, partition, _ = key.decode().split("/")
    return trace_id, int(partition)


def batch_position(key: bytes) -> tuple[int, int]:
    """The input partition and offset a batch key names."""
    _, partition, offset = key.decode().split("/")
    return int(partition), int(offset)


def stored(arrival_s: float, value: bytes) -> bytes:
    """The table value of an input record that arrived at ``arrival_s``."""
    return ARRIVAL.pack(arrival_s) + value


def batch_of(value: bytes) -> bytes:
    """The input record inside a table value."""
    return value[ARRIVAL.size :]


@dataclass(frozen=True, slots=True)
class HeldBatch:
    """A buffered batch found in the table at a recovery."""

    arrival_s: float
    key: bytes
    value: bytes
    trace_id: str
    partition: int


def held_batches(
    batches: Iterable[tuple[bytes, bytes]], partitions: set[int]
) -> list[HeldBatch]:
    """The batches of ``partitions``, in arrival order."""
    held = []
    for key, value in batches:
        trace_id, partition = parse_batch_key(key)
        if partition in partitions:
            arrival_s = ARRIVAL.unpack_from(value)[0]
            held.append(HeldBatch(arrival_s, key, value, trace_id, partition))
    held.sort(key=lambda b: (b.arrival_s, b.key))
    return held
