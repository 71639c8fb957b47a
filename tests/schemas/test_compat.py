"""Every span_batch schema version stays readable by the newest one."""

from __future__ import annotations

import io
import itertools
from decimal import Decimal
from typing import Any

import fastavro
import pytest

import schemas
from schemas import MAGIC, parse, schema_files, schema_fingerprint

VERSIONS = schema_files(schemas.SPAN_BATCH)
PAIRS = list(itertools.combinations(range(len(VERSIONS)), 2))


def record() -> dict[str, Any]:
    """A SpanBatch holding only fields every version has."""
    return {
        "tenant": "acme",
        "trace_id": "ab" * 16,
        "received_unix_nano": 1_700_000_000_000_000_000,
        "source": "otlp_spans[0] 1",
        "resources": [
            {
                "resource_proto": b"r",
                "resource_schema_url": "",
                "scope_proto": b"s",
                "scope_schema_url": "",
                "service_name": "svc",
                "resource_attributes_json": "{}",
            }
        ],
        "spans": [
            {
                "resource_index": 0,
                "span_proto": b"span",
                "span_id": "cd" * 8,
                "parent_span_id": None,
                "name": "chat gpt-4o",
                "kind": "SPAN_KIND_CLIENT",
                "start_unix_nano": 1,
                "end_unix_nano": 2,
                "status_code": "OK",
                "status_message": "",
                "attributes_json": "{}",
                "events_json": "[]",
                "links_count": 0,
                "genai": None,
            }
        ],
    }


def written_with(version: int, data: dict[str, Any]) -> bytes:
    schema = parse(VERSIONS[version])
    out = io.BytesIO()
    out.write(MAGIC + schema_fingerprint(schema))
    fastavro.schemaless_writer(out, schema, data)
    return out.getvalue()


def test_there_are_versions_to_compare() -> None:
    assert len(VERSIONS) >= 2


@pytest.mark.parametrize(("old", "new"), PAIRS)
def test_old_records_decode_under_newer_schemas(old: int, new: int) -> None:
    reader = parse(VERSIONS[new])
    data = written_with(old, record())
    body = io.BytesIO(data[schemas.HEADER_BYTES :])

    decoded = fastavro.schemaless_reader(body, parse(VERSIONS[old]), reader)

    assert isinstance(decoded, dict)
    (span,) = decoded["spans"]
    assert span["span_proto"] == b"span"
    names = {f["name"] for f in reader["fields"][5]["type"]["items"]["fields"]}
    if "cost" in names:
        old_names = {
            f["name"]
            for f in parse(VERSIONS[old])["fields"][5]["type"]["items"]["fields"]
        }
        if "cost" not in old_names:
            assert span["cost"] is None


def test_codec_reads_a_v1_record_with_cost_none() -> None:
    data = written_with(0, record())

    decoded = schemas.codec(schemas.SPAN_BATCH).decode(data)

    assert decoded["spans"][0]["cost"] is None


def test_cost_decimals_round_trip_exactly() -> None:
    codec = schemas.codec(schemas.SPAN_BATCH)
    batch = record()
    amount = Decimal("0.008175000000")
    batch["spans"][0]["cost"] = {
        "status": "priced",
        "currency": "USD",
        "input_cost": Decimal("0.001500000000"),
        "cache_read_cost": Decimal("0.000300000000"),
        "cache_write_cost": Decimal("0.001875000000"),
        "output_cost": Decimal("0.004500000000"),
        "reasoning_cost": Decimal("0E-12"),
        "total_cost": amount,
        "catalog": "genai-prices 0.2.3",
        "matched_provider": "anthropic",
        "matched_model": "claude-3-5-sonnet",
        "match": "exact claude-3-5-sonnet-20241022",
        "reported_cost": None,
    }

    decoded = codec.decode(codec.encode(batch))

    cost = decoded["spans"][0]["cost"]
    assert cost["total_cost"] == amount
    assert isinstance(cost["total_cost"], Decimal)
    assert cost["cache_write_cost"] == Decimal("0.001875")


def test_sampling_fields_default_to_null_and_round_trip() -> None:
    codec = schemas.codec(schemas.SPAN_BATCH)
    names = {f["name"] for f in codec.schema["fields"]}
    assert {"sampling_policy", "sampling_adjusted_count"} <= names

    old = codec.decode(written_with(len(VERSIONS) - 2, record()))
    batch = record()
    batch["sampling_policy"] = "composite/errors"
    batch["sampling_adjusted_count"] = 2.5
    new = codec.decode(codec.encode(batch))

    assert (old["sampling_policy"], old["sampling_adjusted_count"]) == (None, None)
    assert (new["sampling_policy"], new["sampling_adjusted_count"]) == (
        "composite/errors",
        2.5,
    )


def priced_cost() -> dict[str, Any]:
    """A priced cost record holding only fields every version with cost has."""
    return {
        "status": "priced",
        "currency": "USD",
        "input_cost": Decimal("0.001000000000"),
        "cache_read_cost": Decimal("0E-12"),
        "cache_write_cost": Decimal("0E-12"),
        "output_cost": Decimal("0.003164000000"),
        "reasoning_cost": Decimal("0E-12"),
        "total_cost": Decimal("0.004164000000"),
        "catalog": "genai-prices 0.2.3",
        "matched_provider": "perplexity",
        "matched_model": "sonar",
        "match": "exact sonar",
        "reported_cost": None,
    }


def test_costs_written_before_the_request_fee_read_with_none() -> None:
    codec = schemas.codec(schemas.SPAN_BATCH)
    batch = record()
    batch["spans"][0]["cost"] = priced_cost()
    with_cost = [
        i
        for i, path in enumerate(VERSIONS)
        if "request_cost" not in path.read_text() and "total_cost" in path.read_text()
    ]
    assert with_cost

    for version in with_cost:
        cost = codec.decode(written_with(version, batch))["spans"][0]["cost"]

        assert cost["request_cost"] is None
        assert cost["total_cost"] == Decimal("0.004164")


def test_request_fee_round_trips() -> None:
    codec = schemas.codec(schemas.SPAN_BATCH)
    batch = record()
    batch["spans"][0]["cost"] = {
        **priced_cost(),
        "request_cost": Decimal("0.012000000000"),
        "total_cost": Decimal("0.016164000000"),
    }

    cost = codec.decode(codec.encode(batch))["spans"][0]["cost"]

    assert cost["request_cost"] == Decimal("0.012")
