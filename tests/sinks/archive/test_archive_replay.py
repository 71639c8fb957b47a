"""Archive rows rebuilt into SpanBatch records, without Kafka or storage."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
from otlp_batches import span_batches, traces

import schemas
from sinks.archive.replay import records_of
from sinks.archive.schema import Rows

CODEC = schemas.codec(schemas.SPAN_BATCH)
SINCE = datetime(2000, 1, 1, tzinfo=UTC)
UNTIL = datetime(2100, 1, 1, tzinfo=UTC)


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
