"""``llmobs replay --from-archive``: archived spans back into Kafka.

Reads the Parquet objects of an archive (folder or s3://) whose Hive folder
falls in [since, until) and, optionally, one tenant; rebuilds the SpanBatch
records from the lossless columns (``*_proto`` bytes, normalized fields) and
produces them to ``spans_topic`` keyed by trace id, so every downstream sink
(PostgreSQL, Tempo) can be backfilled without decoding the spans again. The
records carry the ``llmobs.replayed_from`` header, which the archive sink
skips: a backfill never duplicates the archive itself.
"""

from __future__ import annotations

import io
import logging
import re
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import schemas
from llmobs.errors import ConfigError, StageError
from sinks.archive import layout
from sinks.archive.storage import Store
from sinks.archive.worker import HEADER_REPLAYED

log = logging.getLogger(__name__)

_RELATIVE = re.compile(r"^(?P<n>\d+)(?P<unit>[mhd])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}
_GENAI_SCALARS = (
    "operation",
    "provider",
    "request_model",
    "response_model",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "total_tokens",
    "time_to_first_token_s",
    "conversation_id",
    "streaming",
    "error_type",
    "reported_cost",
)


def parse_time(value: str, now: datetime | None = None) -> datetime:
    """An ISO 8601 time (UTC unless it says otherwise) or ``15m``/``2h``/``7d`` ago."""
    now = now or datetime.now(UTC)
    match = _RELATIVE.match(value.strip())
    if match:
        return now - timedelta(**{_UNITS[match["unit"]]: int(match["n"])})
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise ConfigError(f"not a time: {value!r} (ISO 8601 or 15m, 2h, 7d)") from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def archived_objects(
    store: Store, since: datetime, until: datetime, tenant: str | None
) -> list[str]:
    """Keys of the Parquet objects whose Hive hour overlaps [since, until)."""
    keys = []
    for key in store.list():
        place = layout.parse_hive(key)
        if place is None or not key.endswith(".parquet"):
            continue
        key_tenant, day, hour = place
        if tenant is not None and key_tenant != tenant:
            continue
        start = datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)
        if start + timedelta(hours=1) <= since or start >= until:
            continue
        keys.append(key)
    return keys


def records_of(
    table: pa.Table, since: datetime, until: datetime, tenant: str | None
) -> Iterator[dict[str, Any]]:
    """SpanBatch records rebuilt from the rows of one archive file."""
    start = table.column("start_time")
    keep = pc.and_(
        pc.greater_equal(start, pa.scalar(since, pa.timestamp("ns", tz="UTC"))),
        pc.less(start, pa.scalar(until, pa.timestamp("ns", tz="UTC"))),
    )
    if tenant is not None:
        keep = pc.and_(keep, pc.equal(table.column("tenant"), tenant))
    table = table.filter(keep)
    for name in ("start_time", "end_time", "received_time"):
        index = table.schema.get_field_index(name)
        table = table.set_column(index, name, table.column(name).cast(pa.int64()))
    rows = table.to_pylist()

    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        key = (row["kafka_topic"], row["kafka_partition"], row["kafka_offset"])
        groups.setdefault((*key, row["trace_id"]), []).append(row)
    for group in groups.values():
        yield _record(group)


def _record(rows: list[dict[str, Any]]) -> dict[str, Any]:
    first = rows[0]
    resources: list[dict[str, Any]] = []
    index_of: dict[tuple[Any, ...], int] = {}
    spans = []
    for row in rows:
        key = (
            row["resource_proto"],
            row["resource_schema_url"],
            row["scope_proto"],
            row["scope_schema_url"],
        )
        if key not in index_of:
            index_of[key] = len(resources)
            resources.append(
                {
                    "resource_proto": row["resource_proto"],
                    "resource_schema_url": row["resource_schema_url"],
                    "scope_proto": row["scope_proto"],
                    "scope_schema_url": row["scope_schema_url"],
                    "service_name": row["service_name"],
                    "resource_attributes_json": row["resource_attributes_json"],
                }
            )
        spans.append(_span(row, index_of[key]))
    return {
        "tenant": first["tenant"],
        "trace_id": first["trace_id"],
        "received_unix_nano": _ns(first["received_time"]),
        "source": first["source"],
        "resources": resources,
        "spans": spans,
    }


@cache
def _decimal_cost_fields() -> frozenset[str]:
    """Fields of the SpanBatch cost record that Avro holds as decimals."""
    record = schemas.codec(schemas.SPAN_BATCH).schema
    spans = next(f for f in record["fields"] if f["name"] == "spans")
    span = spans["type"]["items"]
    cost = next(f for f in span["fields"] if f["name"] == "cost")
    cost_record = next(t for t in cost["type"] if isinstance(t, dict))
    return frozenset(
        f["name"]
        for f in cost_record["fields"]
        for t in (f["type"] if isinstance(f["type"], list) else [f["type"]])
        if isinstance(t, dict) and t.get("logicalType") == "decimal"
    )


def _cost(cost_json: str | None) -> dict[str, Any] | None:
    """The span's cost record from its ``cost_json`` column, amounts exact."""
    if not cost_json:
        return None
    cost: dict[str, Any] = orjson.loads(cost_json)
    for name in _decimal_cost_fields():
        if cost.get(name) is not None:
            cost[name] = Decimal(cost[name])
    return cost


def _span(row: dict[str, Any], resource_index: int) -> dict[str, Any]:
    genai = None
    if row["has_genai"]:
        genai = {name: row[name] for name in _GENAI_SCALARS}
        genai["finish_reasons"] = row["finish_reasons"] or []
        genai["conventions"] = row["conventions"] or []
        genai["issues"] = row["normalization_issues"] or []
        genai["source_attributes"] = orjson.loads(row["genai_sources_json"] or "{}")
    return {
        "resource_index": resource_index,
        "span_proto": row["span_proto"],
        "span_id": row["span_id"],
        "parent_span_id": row["parent_span_id"],
        "name": row["name"],
        "kind": row["kind"],
        "start_unix_nano": _ns(row["start_time"]),
        "end_unix_nano": _ns(row["end_time"]),
        "status_code": row["status_code"],
        "status_message": row["status_message"],
        "attributes_json": row["attributes_json"],
        "events_json": row["events_json"],
        "links_count": row["links_count"],
        "genai": genai,
        "cost": _cost(row["cost_json"]),
    }


def _ns(value: Any) -> int:
    return int(value)


class ProgressBar:
    """A one-line bar on stderr: files done, records and spans sent."""

    def __init__(self, total_files: int) -> None:
        self.total_files = total_files
        self.files = 0
        self.records = 0
        self.spans = 0
        self._started_s = time.monotonic()
        self._shown_s = 0.0

    def update(self, files: int = 0, records: int = 0, spans: int = 0) -> None:
        self.files += files
        self.records += records
        self.spans += spans
        now_s = time.monotonic()
        if now_s - self._shown_s >= 0.2 or self.files == self.total_files:
            self._shown_s = now_s
            self.show(end="\r")

    def show(self, end: str = "\n") -> None:
        width = 30
        done = self.files / self.total_files if self.total_files else 1.0
        bar = "#" * int(done * width)
        elapsed_s = max(time.monotonic() - self._started_s, 1e-9)
        print(
            f"[{bar.ljust(width, '.')}] {self.files}/{self.total_files} files, "
            f"{self.records} records, {self.spans} spans, "
            f"{self.spans / elapsed_s:,.0f} spans/s",
            end=end,
            file=sys.stderr,
            flush=True,
        )


def replay_archive(
    store: Store,
    bootstrap: str,
    topic: str,
    since: datetime,
    until: datetime,
    tenant: str | None = None,
) -> ProgressBar:
    """Produce the archived records of [since, until) to ``topic``."""
    from confluent_kafka import KafkaException, Producer

    from llmobs.kafka import producer_config

    keys = archived_objects(store, since, until, tenant)
    if not keys:
        log.warning("no archived files between %s and %s", since, until)
    progress = ProgressBar(len(keys))
    codec = schemas.codec(schemas.SPAN_BATCH)
    producer = Producer(producer_config(bootstrap))
    failures: list[str] = []
    headers = [(HEADER_REPLAYED, b"archive")]

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            failures.append(str(err))

    try:
        for key in keys:
            data = store.get(key)
            if data is None:
                log.warning("%s vanished during the replay", key)
                progress.update(files=1)
                continue
            table = pq.read_table(io.BytesIO(data))
            for record in records_of(table, since, until, tenant):
                _produce(
                    producer,
                    topic,
                    record["trace_id"].encode(),
                    codec.encode(record),
                    headers,
                    delivered,
                )
                progress.update(records=1, spans=len(record["spans"]))
            progress.update(files=1)
        remaining = producer.flush(60)
    except KafkaException as exc:
        raise StageError(f"cannot produce to {topic}: {exc}") from exc
    if remaining or failures:
        raise StageError(
            f"{remaining} records not delivered to {topic}; errors {failures[:3]}"
        )
    progress.show()
    return progress


def _produce(
    producer: Any,
    topic: str,
    key: bytes,
    value: bytes,
    headers: list[tuple[str, bytes]],
    delivered: Any,
) -> None:
    while True:
        try:
            producer.produce(
                topic, key=key, value=value, headers=headers, on_delivery=delivered
            )
            producer.poll(0)
            return
        except BufferError:
            producer.poll(0.1)
