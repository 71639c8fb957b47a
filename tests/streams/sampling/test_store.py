"""The sampler's table stores, read and written by partition outside events."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import faust
from faust.assignor.client_assignment import ClientAssignment
from faust.types import TP
from faust.types.tuples import RecordMetadata

from streams.sampling.store import (
    PartitionedRocksDBStore,
    partitioned,
    table_options,
)

ROOT = Path(__file__).resolve().parents[3]


def new_table(data_dir: Path, kind: str) -> Any:
    # Never started: the broker address is never dialled.
    app = faust.App(
        "test-sampling-store",
        broker="kafka://127.0.0.1:1",
        datadir=str(data_dir),
        store="memory://",
    )
    return app.Table("sampling-spans", **table_options(kind, "sampling-spans", 3))


async def assign(table: Any, *partitions: int) -> None:
    topic = table.changelog_topic_name
    await table.data.assign_partitions(table, {TP(topic, p) for p in partitions})


async def test_rocksdb_table_gets_the_partitioned_store(tmp_path: Path) -> None:
    table = new_table(tmp_path, "rocksdb")
    assert isinstance(table.data, PartitionedRocksDBStore)
    await assign(table, 0)
    assert table.data.partition_path(0).parent == Path(table.app.conf.tabledir)
    assert table.data.partition_path(0).name == "sampling-spans-0.db"


async def test_rocksdb_reads_and_writes_name_their_partition(tmp_path: Path) -> None:
    table = new_table(tmp_path, "rocksdb")
    await assign(table, 0, 1)
    store = partitioned(table)

    store.put_in(0, b"t1/0/5", b"batch-a")
    store.put_in(1, b"t2/1/9", b"batch-b")

    assert store.get_in(0, b"t1/0/5") == b"batch-a"
    assert store.get_in(1, b"t1/0/5") is None
    assert dict(table.data.items()) == {}  # no partition is active in the app
    store.delete_in(0, b"t1/0/5")
    assert store.get_in(0, b"t1/0/5") is None
    assert store.get_in(1, b"t2/1/9") == b"batch-b"


async def test_rocksdb_write_for_an_unassigned_partition_stays_out(
    tmp_path: Path,
) -> None:
    table = new_table(tmp_path, "rocksdb")
    await assign(table, 0)
    store = partitioned(table)

    store.put_in(2, b"t3/2/1", b"batch")

    assert store.get_in(2, b"t3/2/1") is None
    assert not table.data.partition_path(2).exists()


async def test_rocksdb_scan_reads_in_key_order_without_fausts_entry(
    tmp_path: Path,
) -> None:
    table = new_table(tmp_path, "rocksdb")
    await assign(table, 0)
    store = partitioned(table)
    for key in (b"c", b"a", b"b", b"d"):
        store.put_in(0, key, key.upper())
    table.data._db_for_partition(0).put(table.data.offset_key, b"7")

    assert store.scan_in(0, None, 2) == [(b"a", b"A"), (b"b", b"B")]
    assert store.scan_in(0, b"b", 10) == [(b"c", b"C"), (b"d", b"D")]
    assert store.scan_in(1, None, 10) == []


async def test_rocksdb_batches_outlive_the_process(tmp_path: Path) -> None:
    table = new_table(tmp_path, "rocksdb")
    await assign(table, 1)
    partitioned(table).put_in(1, b"t4/1/3", b"batch-c")
    await table.data.stop()
    del table
    gc.collect()

    # A new process on the same data dir, as a restarted worker.
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from pathlib import Path
        sys.path.insert(0, {str(ROOT)!r})
        from tests.streams.sampling.test_store import assign, new_table
        from streams.sampling.store import partitioned
        table = new_table(Path({str(tmp_path)!r}), "rocksdb")
        asyncio.run(assign(table, 1))
        print(partitioned(table).get_in(1, b"t4/1/3"))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "b'batch-c'"


class Acked:
    """What Faust's producer hands a changelog write's callback once acked."""

    def __init__(self, tp: TP, offset: int) -> None:
        self.metadata = RecordMetadata(tp.topic, tp.partition, tp, offset, 0.0, 0)

    def result(self) -> RecordMetadata:
        return self.metadata


async def test_an_acked_write_for_an_unassigned_partition_records_no_offset(
    tmp_path: Path,
) -> None:
    table = new_table(tmp_path, "rocksdb")
    topic = table.changelog_topic_name
    await assign(table, 0)
    table.app.assignor._assignment = ClientAssignment(
        actives={topic: [0]}, standbys={topic: [1]}
    )

    # A write for partition 2 (taken away by a rebalance) is acknowledged.
    table._on_changelog_sent(Acked(TP(topic, 2), 42))
    table._on_changelog_sent(Acked(TP(topic, 0), 7))
    table._on_changelog_sent(Acked(TP(topic, 1), 9))

    assert not table.data.partition_path(2).exists()
    assert table.data.persisted_offset(TP(topic, 0)) == 7
    assert table.data.persisted_offset(TP(topic, 1)) == 9


def test_memory_store_ignores_the_partition(tmp_path: Path) -> None:
    table = new_table(tmp_path, "memory")
    store = partitioned(table)

    store.put_in(0, b"k", b"v")

    assert store.get_in(2, b"k") == b"v"
    assert dict(table.data.items()) == {b"k": b"v"}
    store.delete_in(1, b"k")
    assert store.get_in(0, b"k") is None
