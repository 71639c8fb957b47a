"""The archive sink against real Kafka, a local folder and a local S3 server.

The archive is read back with DuckDB (local folder) and pyarrow (S3): every
span is there exactly once, with its original OTLP bytes, also after the sink
process is killed with SIGKILL in the middle of its files and restarted.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest
from confluent_kafka import Consumer
from otlp_batches import produce, span_batches, traces

import schemas
from llmobs.kafka import consumer_config
from sinks.archive.replay import replay_archive
from sinks.archive.settings import ArchiveSettings
from sinks.archive.storage import LocalStore, WriteConflict, open_store
from sinks.archive.worker import ArchiveSink

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
S3_ENDPOINT = os.environ.get("LLMOBS_S3_ENDPOINT_URL", "http://127.0.0.1:9000")
HOUR_NS = 3600 * 10**9
# 2025-01-15T09:59:59.990Z: each workload straddles two Hive hours.
BASE_NS = 1_736_935_199_990_000_000


def workload(count: int = 12) -> tuple[list[Any], list[tuple[str, bytes]]]:
    sent = traces(count // 2, "acme", start_ns=BASE_NS)
    sent += traces(count - count // 2, "globex", start_ns=BASE_NS + HOUR_NS // 2)
    return sent, span_batches(sent)


def span_protos(sent: list[Any]) -> dict[str, bytes]:
    return {
        span.span_id.hex(): span.SerializeToString()
        for request in sent
        for span in request.resource_spans[0].scope_spans[0].spans
    }


def settings(
    bootstrap: str, topic: str, group: str, url: str, **overrides: Any
) -> ArchiveSettings:
    values: dict[str, Any] = {
        "kafka_bootstrap": bootstrap,
        "spans_topic": topic,
        "group_id": group,
        "archive_url": url,
        "flush_interval_s": 0.2,
        "max_idle_s": 3.0,
        "upload_retry_deadline_s": 5.0,
    }
    values.update(overrides)
    return ArchiveSettings(**values)


async def run_sink(s: ArchiveSettings) -> ArchiveSink:
    sink = ArchiveSink(s)
    await asyncio.wait_for(sink.run(asyncio.Event()), 120)
    return sink


def query(root: Path, sql: str) -> list[tuple[Any, ...]]:
    source = f"read_parquet('{root}/*/*/*/*.parquet', hive_partitioning = true)"
    return duckdb.sql(sql.replace("archive", source)).fetchall()


async def test_local_archive_holds_every_span_once(
    kafka_bootstrap: str, new_topic: Any, group_id: str, tmp_path: Path
) -> None:
    topic = new_topic("archive-in", partitions=2)
    sent, batches = workload()
    produce(kafka_bootstrap, topic, batches)

    sink = await run_sink(settings(kafka_bootstrap, topic, group_id, str(tmp_path)))

    expected = span_protos(sent)
    assert sink.handler.archived_spans == len(expected)
    rows = query(tmp_path, "SELECT span_id, span_proto, tenant, hour FROM archive")
    assert len(rows) == len(expected)
    assert {r[0]: bytes(r[1]) for r in rows} == expected
    assert {(r[2], r[3]) for r in rows} == {
        ("acme", "09"),
        ("acme", "10"),
        ("globex", "10"),
    }
    typed = query(
        tmp_path,
        "SELECT sum(input_tokens), count(*) FILTER (WHERE provider IS NOT NULL), "
        "min(start_time) FROM archive",
    )
    assert typed[0][0] > 0
    assert typed[0][1] == len(expected) * 3 // 4
    # Objects are named by topic, partition and offset range only.
    for path in tmp_path.glob("tenant=*/date=*/hour=*/*.parquet"):
        assert path.name.startswith(f"{topic}-")


async def test_restart_after_sigkill_keeps_every_span_once(
    kafka_bootstrap: str, new_topic: Any, group_id: str, tmp_path: Path
) -> None:
    # One partition; its first record opens a file (a quiet tenant, another
    # hour) that stays open while the busy folders behind it roll and upload,
    # so the committed offset lags behind uploaded records when the kill hits.
    topic = new_topic("archive-in", partitions=1)
    quiet = traces(1, "quiet", start_ns=BASE_NS - 2 * HOUR_NS, seed=2)
    busy, busy_batches = workload(40)
    sent = quiet + busy
    batches = span_batches(quiet) + busy_batches
    first, second = batches[:24], batches[24:]
    produce(kafka_bootstrap, topic, first)
    env = dict(os.environ)
    env.update(
        {
            "LLMOBS_KAFKA_BOOTSTRAP": kafka_bootstrap,
            "LLMOBS_SPANS_TOPIC": topic,
            "LLMOBS_GROUP_ID": group_id,
            "LLMOBS_ARCHIVE_URL": str(tmp_path),
            # Tiny files roll often while others stay open: a kill always
            # finds uploaded files next to buffered ones.
            "LLMOBS_MAX_FILE_BYTES": "6000",
            "LLMOBS_MAX_FILE_AGE_S": "600",
            "LLMOBS_FLUSH_INTERVAL_S": "0.2",
            "LLMOBS_MAX_BATCH_SPANS": "8",
        }
    )
    log_path = tmp_path.parent / f"archive-{uuid.uuid4().hex[:6]}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llmobs.cli", "sink-archive"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    try:
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob("_manifests/*/*.json")):
            assert proc.poll() is None, log_path.read_text()[-2000:]
            assert time.monotonic() < deadline, "no upload within 60 s"
            time.sleep(0.1)
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    uploaded_before = len(list(tmp_path.glob("tenant=*/*/*/*.parquet")))

    produce(kafka_bootstrap, topic, second)
    sink = await run_sink(
        settings(
            kafka_bootstrap,
            topic,
            group_id,
            str(tmp_path),
            max_file_bytes=6000,
            # The killed member keeps its partitions until its session
            # times out (45 s): stay up long enough to be given them.
            max_idle_s=20.0,
        )
    )

    expected = span_protos(sent)
    rows = query(tmp_path, "SELECT span_id, count(*) FROM archive GROUP BY span_id")
    assert {r[0] for r in rows} == set(expected)
    assert max(r[1] for r in rows) == 1
    assert uploaded_before > 0
    assert sink.handler.skipped_spans > 0, "the restart re-read nothing uploaded"


async def test_s3_archive_and_replay_are_lossless(
    kafka_bootstrap: str, new_topic: Any, group_id: str
) -> None:
    import boto3

    bucket = f"archive-{uuid.uuid4().hex[:8]}"
    client = boto3.client(
        "s3",
        endpoint_url=S3_ENDPOINT,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    try:
        client.create_bucket(Bucket=bucket)
    except Exception as exc:
        pytest.fail(f"no S3 server at {S3_ENDPOINT} ({exc}); run infra/s3.sh start")
    topic = new_topic("archive-in", partitions=2)
    sent, batches = workload()
    produce(kafka_bootstrap, topic, batches)
    url = f"s3://{bucket}/spans"
    s = settings(
        kafka_bootstrap,
        topic,
        group_id,
        url,
        s3_endpoint_url=S3_ENDPOINT,
        s3_access_key_id="test",
        s3_secret_access_key="test",
    )

    await run_sink(s)

    store = open_store(
        url, endpoint_url=S3_ENDPOINT, access_key_id="test", secret_access_key="test"
    )
    keys = [k for k in store.list() if k.endswith(".parquet")]
    tables = [pq.read_table(io.BytesIO(store.get(k) or b"")) for k in keys]
    archived = [row for t in tables for row in t.select(["span_id"]).to_pylist()]
    assert sorted(r["span_id"] for r in archived) == sorted(span_protos(sent))

    # Replay the archive into a fresh topic and compare the records.
    from datetime import UTC, datetime

    target = new_topic("replayed", partitions=1)
    since = datetime(2025, 1, 15, 9, tzinfo=UTC)
    until = datetime(2025, 1, 15, 11, tzinfo=UTC)
    progress = replay_archive(store, kafka_bootstrap, target, since, until)
    assert progress.spans == len(span_protos(sent))
    codec = schemas.codec(schemas.SPAN_BATCH)
    originals = {codec.decode(v)["trace_id"]: codec.decode(v) for _, v in batches}
    consumer = Consumer(consumer_config(kafka_bootstrap, group_id + "-replay"))
    consumer.subscribe([target])
    replayed: list[dict[str, Any]] = []
    for _ in range(60):
        replayed += [
            codec.decode(m.value()) for m in consumer.consume(100, 0.5) if not m.error()
        ]
        if len(replayed) >= progress.records:
            break
    consumer.close()
    spans_back = {s["span_id"]: (r, s) for r in replayed for s in r["spans"]}
    assert len(spans_back) == len(span_protos(sent))
    for trace_id, original in originals.items():
        for span in original["spans"]:
            record, back = spans_back[span["span_id"]]
            assert record["trace_id"] == trace_id
            assert record["tenant"] == original["tenant"]
            resource = record["resources"][back["resource_index"]]
            source = original["resources"][span["resource_index"]]
            assert resource == source
            # Every field, cost included; only the resource numbering may differ.
            assert {k: v for k, v in back.items() if k != "resource_index"} == {
                k: v for k, v in span.items() if k != "resource_index"
            }
    assert any(s["cost"] for r, s in spans_back.values())
    for record in replayed:
        original = originals[record["trace_id"]]
        assert {k: v for k, v in record.items() if k not in ("resources", "spans")} == {
            k: v for k, v in original.items() if k not in ("resources", "spans")
        }


def test_local_store_lists_by_prefix(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put("a/b/one.parquet", b"1")
    store.put("a/c/two.parquet", b"2")
    store.put("a/bc/three.parquet", b"3")

    assert store.list("a/b/") == ["a/b/one.parquet"]
    assert store.list("a/b") == ["a/b/one.parquet", "a/bc/three.parquet"]
    assert store.list("a/c/tw") == ["a/c/two.parquet"]
    assert store.list() == ["a/b/one.parquet", "a/bc/three.parquet", "a/c/two.parquet"]
    assert store.get("a/c/two.parquet") == b"2"
    assert store.get("missing") is None


def test_local_store_lists_a_name_prefix_in_its_folder_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalStore(tmp_path)
    for hour in range(24):
        store.put(f"tenant=a/date=2025-01-15/hour={hour:02d}/t-0-1-2.parquet", b"x")
    import sinks.archive.storage as storage

    walked: list[str] = []
    real_scandir = os.scandir

    def scandir(path: Any) -> Any:
        walked.append(Path(path).relative_to(tmp_path).as_posix())
        return real_scandir(path)

    monkeypatch.setattr(storage.os, "scandir", scandir)
    keys = store.list("tenant=a/date=2025-01-15/hour=07/t-0-")

    assert keys == ["tenant=a/date=2025-01-15/hour=07/t-0-1-2.parquet"]
    assert walked == ["tenant=a/date=2025-01-15/hour=07"]


def test_local_store_conditional_put_refuses_a_stale_version(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    first = store.put_if("_manifests/t/0.json", b"1", None)
    with pytest.raises(WriteConflict):
        store.put_if("_manifests/t/0.json", b"2", None)
    second = store.put_if("_manifests/t/0.json", b"3", first)
    with pytest.raises(WriteConflict):
        store.put_if("_manifests/t/0.json", b"4", first)

    assert store.get_versioned("_manifests/t/0.json") == (b"3", second)
    assert store.list("_manifests/") == ["_manifests/t/0.json"]
    assert store.exists("_manifests/t/0.json") and not store.exists("_manifests/x")


def test_s3_conditional_put_refuses_a_stale_version() -> None:
    import boto3

    bucket = f"archive-{uuid.uuid4().hex[:8]}"
    boto3.client(
        "s3",
        endpoint_url=S3_ENDPOINT,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    ).create_bucket(Bucket=bucket)
    store = open_store(
        f"s3://{bucket}/a",
        endpoint_url=S3_ENDPOINT,
        access_key_id="test",
        secret_access_key="test",
    )

    first = store.put_if("m.json", b"1", None)
    with pytest.raises(WriteConflict):
        store.put_if("m.json", b"2", None)
    second = store.put_if("m.json", b"3", first)
    with pytest.raises(WriteConflict):
        store.put_if("m.json", b"4", first)

    assert store.get_versioned("m.json") == (b"3", second)
    assert store.get_versioned("absent.json") == (None, None)
    assert store.exists("m.json") and not store.exists("absent.json")
