"""Where the sampler's state waits: Faust tables written by input partition.

Both tables are backed by a changelog topic. Their local store is RocksDB
(``rocksdb``, the default: buffered spans on disk, only an index of them in
memory, and after a restart only the changelog's tail is read back) or a
dict (``memory``: the whole changelog is read back at every start).

Faust's own RocksDB store takes the partition of a write from the stream
event being processed; the sampler also writes from its decision timer,
outside any event, so ``PartitionedRocksDBStore`` adds reads and writes that
name their partition.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable
from typing import Any, Protocol, cast

import faust.stores
from faust.stores.rocksdb import Store as RocksDBStore
from faust.types import TP

from streams.sampling.settings import ROCKSDB

ROCKSDB_SCHEME = "llmobs-rocksdb"
# Key and value serializers: the tables hold bytes as they are.
RAW = ("raw", "raw")

# Per partition database: small memtables, since the values are short-lived
# (a trace waits seconds) and a worker opens one database per partition.
ROCKSDB_OPTIONS = {
    "write_buffer_size": 8 * 1024 * 1024,
    "max_write_buffer_number": 2,
    "block_cache_size": 16 * 1024 * 1024,
}

faust.stores.STORES.aliases[ROCKSDB_SCHEME] = f"{__name__}:PartitionedRocksDBStore"


class PartitionedRocksDBStore(RocksDBStore):
    """Faust's RocksDB store, plus access by explicit partition.

    Only the databases of assigned partitions are open, and a read or write
    for another partition does nothing here. The sampler writes nothing for
    a partition it does not own; the store also refuses to record a
    changelog offset for one, which Faust does when any changelog write is
    acknowledged: that offset would make a later recovery of the partition
    start after what its other owner wrote in between.
    """

    def set_persisted_offset(self, tp: TP, offset: int) -> None:
        """Record ``offset`` only for a changelog partition assigned here."""
        assignor = self.app.assignor
        if tp in assignor.assigned_actives() or tp in assignor.assigned_standbys():
            super().set_persisted_offset(tp, offset)

    def get_in(self, partition: int, key: bytes) -> bytes | None:
        db = self._dbs.get(partition)
        value = db.get(key) if db is not None else None
        return bytes(value) if value is not None else None

    def put_in(self, partition: int, key: bytes, value: bytes) -> None:
        db = self._dbs.get(partition)
        if db is not None:
            db.put(key, value)
            self._key_index[key] = partition

    def delete_in(self, partition: int, key: bytes) -> None:
        db = self._dbs.get(partition)
        if db is not None:
            db.delete(key)
        self._key_index.pop(key, None)

    def scan_in(
        self, partition: int, after: bytes | None, limit: int
    ) -> list[tuple[bytes, bytes]]:
        """Up to ``limit`` entries in key order after ``after``, Faust's own
        offset entry aside."""
        db = self._dbs.get(partition)
        if db is None:
            return []
        found: list[tuple[bytes, bytes]] = []
        cursor = db.iter()
        if after is None:
            cursor.seek_to_first()
        else:
            cursor.seek(after)
            if cursor.valid() and bytes(cursor.key()) == after:
                cursor.next()
        while cursor.valid() and len(found) < limit:
            key = bytes(cursor.key())
            if key != self.offset_key:
                found.append((key, bytes(cursor.value())))
            cursor.next()
        return found


class Partitioned(Protocol):
    def get_in(self, partition: int, key: bytes) -> bytes | None: ...

    def put_in(self, partition: int, key: bytes, value: bytes) -> None: ...

    def delete_in(self, partition: int, key: bytes) -> None: ...

    def scan_in(
        self, partition: int, after: bytes | None, limit: int
    ) -> list[tuple[bytes, bytes]]: ...


class _MemoryPartitions:
    """A memory store's dict, which needs no partition."""

    def __init__(self, data: Any) -> None:
        self.data = data

    def get_in(self, partition: int, key: bytes) -> bytes | None:
        value = self.data.get(key)
        return value if value is None else bytes(value)

    def put_in(self, partition: int, key: bytes, value: bytes) -> None:
        self.data[key] = value

    def delete_in(self, partition: int, key: bytes) -> None:
        self.data.pop(key, None)

    def scan_in(
        self, partition: int, after: bytes | None, limit: int
    ) -> list[tuple[bytes, bytes]]:
        keys = sorted(k for k in self.data if after is None or k > after)[:limit]
        return [(k, bytes(self.data[k])) for k in keys]


def table_options(kind: str, name: str, partitions: int) -> dict[str, Any]:
    """Keyword arguments of ``app.Table`` for the sampler table ``name``."""
    # The table name as the URL's path: Faust ignores a store URL without one
    # ("rocksdb://" is an empty URL) and falls back to the app's store.
    options: dict[str, Any] = {
        "key_type": bytes,
        "value_type": bytes,
        "partitions": partitions,
        "store": f"memory:{name}",
    }
    if kind == ROCKSDB:
        options["store"] = f"{ROCKSDB_SCHEME}:{name}"
        options["options"] = dict(ROCKSDB_OPTIONS)
    return options


def partitioned(table: Any) -> Partitioned:
    data = table.data
    if isinstance(data, PartitionedRocksDBStore):
        return data
    return _MemoryPartitions(data)


class TableStore:
    """The sampler's ``StateStore`` over its two Faust tables.

    Each write goes to the changelog (the partition given is the trace's input
    partition) and to the local store; the changelog is what survives a lost
    disk, the local store what a read finds. A write returns the changelog
    record's future, resolved once Kafka has it.
    """

    def __init__(self, spans: Any, decisions: Any) -> None:
        self.spans = spans
        self.decisions = decisions

    @property
    def decisions_on_disk(self) -> bool:
        return isinstance(self._decisions, PartitionedRocksDBStore)

    @functools.cached_property
    def _spans(self) -> Partitioned:
        # Faust builds a table's store on first access: not before it starts.
        return partitioned(self.spans)

    @functools.cached_property
    def _decisions(self) -> Partitioned:
        return partitioned(self.decisions)

    def get_batch(self, partition: int, key: bytes) -> bytes | None:
        return self._spans.get_in(partition, key)

    def put_batch(self, partition: int, key: bytes, value: bytes) -> Awaitable[Any]:
        future = self.spans.send_changelog(partition, key, value, *RAW)
        self._spans.put_in(partition, key, value)
        return cast(Awaitable[Any], future)

    def delete_batch(self, partition: int, key: bytes) -> Awaitable[Any]:
        future = self.spans.send_changelog(partition, key, None, *RAW)
        self._spans.delete_in(partition, key)
        return cast(Awaitable[Any], future)

    def put_decision(
        self, partition: int, trace_id: str, value: bytes
    ) -> Awaitable[Any]:
        key = trace_id.encode()
        future = self.decisions.send_changelog(partition, key, value, *RAW)
        self._decisions.put_in(partition, key, value)
        return cast(Awaitable[Any], future)

    def get_decision(self, partition: int, trace_id: str) -> bytes | None:
        return self._decisions.get_in(partition, trace_id.encode())

    def scan_decisions(
        self, partition: int, after: bytes | None, limit: int
    ) -> list[tuple[bytes, bytes]]:
        return self._decisions.scan_in(partition, after, limit)

    def delete_decision(self, partition: int, trace_id: str) -> Awaitable[Any]:
        key = trace_id.encode()
        future = self.decisions.send_changelog(partition, key, None, *RAW)
        self._decisions.delete_in(partition, key)
        return cast(Awaitable[Any], future)
