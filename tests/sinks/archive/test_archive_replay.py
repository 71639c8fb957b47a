"""Archive rows rebuilt into SpanBatch records, without Kafka or storage."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest
from otlp_batches import span_batches, traces

import schemas
from llmobs.replay import ReplaySettings
from sinks.archive.replay import records_of
from sinks.archive.schema import Rows
from sinks.archive.storage import open_store

CODEC = schemas.codec(schemas.SPAN_BATCH)
S3_ENDPOINT = os.environ.get("LLMOBS_S3_ENDPOINT_URL", "http://127.0.0.1:9000")
# 2025-01-15T09:30Z
BASE_NS = 1_736_933_400_000_000_000
SINCE = datetime(2000, 1, 1, tzinfo=UTC)
UNTIL = datetime(2100, 1, 1, tzinfo=UTC)


def replay_cli(
    args: list[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``llmobs replay ARGS`` run as a user would, from the repository."""
    return subprocess.run(
        [sys.executable, "-m", "llmobs.cli", "replay", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[3],
    )


def archived(records: list[dict[str, Any]]) -> Rows:
    rows = Rows()
    for offset, record in enumerate(records):
        for span in record["spans"]:
            rows.add(record, span, ("llm.spans", 0, offset))
    return rows


def test_replayed_records_equal_the_archived_ones_cost_included() -> None:
    originals = [CODEC.decode(v) for _, v in span_batches(traces(4, "acme"))]
    assert any(
        s["cost"] and s["cost"]["total_cost"] for r in originals for s in r["spans"]
    )

    rebuilt = list(records_of(archived(originals).table(), SINCE, UNTIL, None))

    # Through the Avro codec, as the replay sends them.
    assert [CODEC.decode(CODEC.encode(r)) for r in rebuilt] == originals


def test_cost_json_writes_decimals_positionally() -> None:
    record = CODEC.decode(span_batches(traces(1, "acme"))[0][1])
    span = record["spans"][0]
    span["cost"] = {
        **(span["cost"] or {"status": "priced", "catalog": "test"}),
        "total_cost": Decimal("0E-12"),
        "input_cost": Decimal("1.5E-7"),
    }

    rows = archived([{**record, "spans": [span]}])

    cost = orjson.loads(rows.columns["cost_json"][0])
    assert cost["total_cost"] == "0.000000000000"
    assert cost["input_cost"] == "0.00000015"


def test_replay_settings_mask_s3_credentials() -> None:
    shown = repr(
        ReplaySettings(s3_access_key_id="AKIAEXAMPLE", s3_secret_access_key="s3cr3t")
    )

    assert "s3cr3t" not in shown and "AKIAEXAMPLE" not in shown
    assert "s3_secret_access_key=***" in shown


@pytest.mark.integration
def test_replay_from_s3_uses_the_credentials_it_is_given(
    kafka_bootstrap: str, new_topic: Any, tmp_path: Path
) -> None:
    import boto3

    bucket = f"replay-{uuid.uuid4().hex[:8]}"
    boto3.client(
        "s3",
        endpoint_url=S3_ENDPOINT,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    ).create_bucket(Bucket=bucket)
    store = open_store(
        f"s3://{bucket}/spans",
        endpoint_url=S3_ENDPOINT,
        access_key_id="test",
        secret_access_key="test",
    )
    record = CODEC.decode(span_batches(traces(1, "acme", start_ns=BASE_NS))[0][1])
    out = io.BytesIO()
    pq.write_table(archived([record]).table(), out)
    store.put(
        "tenant=acme/date=2025-01-15/hour=09/llm.spans-0-1-1.parquet", out.getvalue()
    )
    # No credentials anywhere but the flags.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",
    )

    done = replay_cli(
        [
            "--from-archive",
            f"s3://{bucket}/spans",
            "--since",
            "2025-01-15T09:00",
            "--until",
            "2025-01-15T10:00",
            "--spans-topic",
            new_topic("replayed", partitions=1),
            "--kafka-bootstrap",
            kafka_bootstrap,
            "--s3-endpoint-url",
            S3_ENDPOINT,
            "--s3-access-key-id",
            "test",
            "--s3-secret-access-key",
            "test",
        ],
        env,
    )

    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{len(record['spans'])} spans" in done.stderr


def test_replay_from_a_folder_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    done = replay_cli(
        ["--from-archive", str(tmp_path / "no-such-archive"), "--since", "2h"]
    )

    assert done.returncode == 2
    assert "no-such-archive does not exist" in done.stderr
