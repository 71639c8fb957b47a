"""Reading recorded OTLP files for ``llmobs replay``."""

from __future__ import annotations

import struct
from pathlib import Path

import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from otlp_shapes import request_opening_with_brace

from llmobs import synthetic
from llmobs.errors import ConfigError, DecodeError
from llmobs.replay import JSON, PROTOBUF, ReplaySettings, read_requests


def test_json_lines_yield_one_request_per_line(tmp_path: Path) -> None:
    requests = [synthetic.llm_trace(calls=1) for _ in range(3)]
    path = tmp_path / "traces.jsonl"
    path.write_bytes(b"\n".join(synthetic.otlp_json(r) for r in requests) + b"\n\n")

    bodies = list(read_requests(path))

    assert [kind for _, kind in bodies] == [JSON] * 3
    assert [body for body, _ in bodies] == [synthetic.otlp_json(r) for r in requests]


def test_length_prefixed_protobuf_stream_is_split(tmp_path: Path) -> None:
    requests = [synthetic.llm_trace(calls=2).SerializeToString() for _ in range(4)]
    path = tmp_path / "traces.pb"
    path.write_bytes(b"".join(struct.pack(">I", len(r)) + r for r in requests))

    bodies = list(read_requests(path))

    assert [body for body, _ in bodies] == requests
    assert {kind for _, kind in bodies} == {PROTOBUF}


def test_a_bare_protobuf_message_is_one_request(tmp_path: Path) -> None:
    request = synthetic.llm_trace(calls=1).SerializeToString()
    path = tmp_path / "one.bin"
    path.write_bytes(request)

    ((body, kind),) = list(read_requests(path, "proto"))

    assert kind == PROTOBUF
    assert ExportTraceServiceRequest.FromString(body).resource_spans


def test_a_protobuf_file_opening_with_newline_brace_is_protobuf(
    tmp_path: Path,
) -> None:
    request = request_opening_with_brace().SerializeToString()
    path = tmp_path / "one.bin"
    path.write_bytes(request)

    assert list(read_requests(path)) == [(request, PROTOBUF)]


def test_truncated_stream_is_a_clear_error(tmp_path: Path) -> None:
    request = synthetic.llm_trace(calls=1).SerializeToString()
    path = tmp_path / "cut.pb"
    path.write_bytes(struct.pack(">I", len(request) + 10) + request)

    with pytest.raises(DecodeError, match="cut"):
        list(read_requests(path, "proto-stream"))


def test_a_line_that_is_not_json_is_named_and_skipped(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"resourceSpans": []}\nnot json\n{"resourceSpans": [{}]}\n')
    skipped: list[str] = []

    bodies = list(read_requests(path, "jsonl", skipped))

    assert len(bodies) == 2
    assert skipped == [f"{path}:2"]


def test_a_pretty_printed_json_file_is_one_request(tmp_path: Path) -> None:
    request = synthetic.llm_trace(calls=1)
    path = tmp_path / "one.json"
    path.write_bytes(
        orjson.dumps(
            orjson.loads(synthetic.otlp_json(request)), option=orjson.OPT_INDENT_2
        )
    )

    ((body, kind),) = list(read_requests(path))

    assert kind == JSON
    assert orjson.loads(body) == orjson.loads(synthetic.otlp_json(request))


def test_unknown_target_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="target"):
        ReplaySettings(target="s3").validate()
