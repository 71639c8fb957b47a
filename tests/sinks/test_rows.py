"""SpanBatch records as llm_spans rows, without services."""

from __future__ import annotations

from datetime import UTC, date, datetime

import orjson
import pytest
from spanbatches import BASE_NS, encode, genai, span, span_batch

import schemas
from sinks import rows


def as_dict(row: rows.Row) -> dict[str, object]:
    return dict(zip(rows.COLUMN_NAMES, row, strict=True))


def test_row_has_typed_values_of_span_batch_and_resource() -> None:
    batch = span_batch("ab" * 16, [span("00f067aa0ba902b7", parent_span_id="1" * 16)])

    [row] = rows.batch_rows(batch)

    values = as_dict(row)
    assert values["tenant"] == "acme"
    assert values["trace_id"] == "ab" * 16
    assert values["span_id"] == "00f067aa0ba902b7"
    assert values["parent_span_id"] == "1" * 16
    assert values["service_name"] == "checkout"
    assert values["resource_attributes"] == '{"service.name": "checkout"}'
    assert values["start_time"] == datetime(2025, 1, 15, 10, 0, tzinfo=UTC)
    assert values["end_time"] == datetime(2025, 1, 15, 10, 0, 1, 500000, tzinfo=UTC)
    assert values["duration_ms"] == 1500.0
    assert values["received_at"] == datetime(2025, 1, 15, 10, 0, 2, tzinfo=UTC)
    assert values["attributes"] == '{"gen_ai.system": "openai", "n": 2}'
    assert values["events"] == '[{"name": "first_token", "time_unix_nano": 1}]'
    assert values["source"] == "otlp_spans[0] 42"


def test_genai_fields_map_to_their_columns() -> None:
    [row] = rows.batch_rows(span_batch("ab" * 16, [span("a" * 16)]))

    values = as_dict(row)
    assert values["operation"] == "chat"
    assert values["provider"] == "openai"
    assert values["request_model"] == "gpt-4o"
    assert values["response_model"] == "gpt-4o-2024-08-06"
    assert values["input_tokens"] == 120
    assert values["output_tokens"] == 45
    assert values["cache_read_tokens"] == 100
    assert values["cache_write_tokens"] == 0
    assert values["reasoning_tokens"] == 7
    assert values["total_tokens"] == 165
    assert values["finish_reasons"] == ["stop"]
    assert values["time_to_first_token_s"] == 0.25
    assert values["conversation_id"] == "conv-1"
    assert values["streaming"] is True
    assert values["error_type"] is None
    assert values["reported_cost"] == 0.0012
    assert values["conventions"] == ["otel_genai", "openllmetry"]
    assert values["normalization_issues"] == ["tokens_as_string"]
    sources = orjson.loads(str(values["genai_sources"]))
    assert sources == {"input_tokens": "gen_ai.usage.input_tokens"}


def test_span_without_genai_has_null_genai_columns() -> None:
    [row] = rows.batch_rows(span_batch("ab" * 16, [span("a" * 16, genai=None)]))

    values = as_dict(row)
    genai_columns = rows.COLUMN_NAMES[
        rows.COLUMN_NAMES.index("operation") : rows.COLUMN_NAMES.index("attributes")
    ]
    assert len(genai_columns) == 19
    assert all(values[name] is None for name in genai_columns)
    assert values["name"] == "chat gpt-4o"


def test_rows_survive_the_avro_round_trip() -> None:
    batch = span_batch("cd" * 16, [span("a" * 16), span("b" * 16, genai=None)])
    decoded = schemas.codec(schemas.SPAN_BATCH).decode(encode(batch))

    built = rows.batch_rows(decoded)

    assert [r[2] for r in built] == ["a" * 16, "b" * 16]
    assert all(len(r) == len(rows.STAGING_COLUMNS) for r in built)


def test_each_span_takes_its_own_resource() -> None:
    batch = span_batch("ab" * 16, [span("a" * 16), span("b" * 16, resource_index=1)])
    second = dict(batch["resources"][0], service_name="billing")
    batch["resources"].append(second)

    built = rows.batch_rows(batch)

    assert [as_dict(r)["service_name"] for r in built] == ["checkout", "billing"]


@pytest.mark.parametrize("index", [1, -1])
def test_resource_index_out_of_range_raises_index_error(index: int) -> None:
    batch = span_batch("ab" * 16, [span("a" * 16, resource_index=index)])

    with pytest.raises(IndexError):
        rows.batch_rows(batch)


def test_unix_nanos_truncate_to_microseconds_in_utc() -> None:
    moment = rows.from_unix_nano(BASE_NS + 1_999)

    assert moment == datetime(2025, 1, 15, 10, 0, 0, 1, tzinfo=UTC)
    assert moment.utcoffset() is not None


def test_row_day_is_the_utc_day_of_the_start() -> None:
    late = BASE_NS + 14 * 3600 * 10**9 - 1  # 23:59:59.999999999 UTC
    [row] = rows.batch_rows(
        span_batch("ab" * 16, [span("a" * 16, start_unix_nano=late)])
    )

    assert rows.row_day(row) == date(2025, 1, 15)


def test_insert_casts_json_text_and_cost() -> None:
    assert "attributes::jsonb" in rows.INSERT_FROM_STAGING
    assert "events::jsonb" in rows.INSERT_FROM_STAGING
    assert "reported_cost::numeric" in rows.INSERT_FROM_STAGING
    assert rows.INSERT_FROM_STAGING.endswith("ON CONFLICT DO NOTHING")


def test_genai_defaults_give_empty_sources_object() -> None:
    [row] = rows.batch_rows(
        span_batch("ab" * 16, [span("a" * 16, genai=genai(source_attributes={}))])
    )

    assert as_dict(row)["genai_sources"] == "{}"


def test_without_nul_replaces_nul_in_text_lists_and_json_escapes_only() -> None:
    batch = span_batch("ab" * 16, [span("a" * 16)])
    (row,) = rows.batch_rows(batch)
    names = list(rows.COLUMN_NAMES)
    dirty = list(row)
    dirty[names.index("name")] = "a\x00b"
    dirty[names.index("finish_reasons")] = ["stop\x00", "length"]
    # An escaped NUL, and an escaped backslash followed by the text u0000.
    dirty[names.index("attributes")] = '{"k": "\\u0000", "j": "\\\\u0000"}'
    dirty[names.index("status_message")] = "\\u0000 is fine in plain text"

    clean = rows.without_nul(tuple(dirty))

    assert clean[names.index("name")] == "a\ufffdb"
    assert clean[names.index("finish_reasons")] == ["stop\ufffd", "length"]
    assert clean[names.index("attributes")] == '{"k": "\\ufffd", "j": "\\\\u0000"}'
    assert clean[names.index("status_message")] == "\\u0000 is fine in plain text"
    assert rows.without_nul(row) is row
