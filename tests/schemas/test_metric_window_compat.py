"""Every metric_window schema version stays readable by the newest one."""

from __future__ import annotations

import io
import itertools
import random
from typing import Any

import fastavro
import pytest

import schemas
from schemas import MAGIC, parse, schema_files, schema_fingerprint
from streams.metrics.bucket import IDENTITY_JOINED, IDENTITY_SHA256
from streams.metrics.window import PartitionWindows, identity
from tests.streams.metrics.spans import batch, span

NAME = "metric_window"
VERSIONS = schema_files(NAME)
PAIRS = list(itertools.combinations(range(len(VERSIONS)), 2))
T0_NS = 1_750_000_020 * 10**9


def record() -> dict[str, Any]:
    """One closed window as the newest stream code emits it."""
    windows = PartitionWindows("llm.spans[0]", 60, grace_s=0)
    windows.apply(7, batch("acme", [span(random.Random(1), T0_NS)]))
    windows.close(now_ms=T0_NS // 10**6 + 10 * 60_000)
    (out,) = windows.outbox
    return out


def written_with(version: int, data: dict[str, Any]) -> bytes:
    schema = parse(VERSIONS[version])
    names = {f["name"] for f in schema["fields"]}
    out = io.BytesIO()
    out.write(MAGIC + schema_fingerprint(schema))
    fastavro.schemaless_writer(out, schema, {k: data[k] for k in names})
    return out.getvalue()


def test_there_are_versions_to_compare() -> None:
    assert len(VERSIONS) >= 2


@pytest.mark.parametrize(("old", "new"), PAIRS)
def test_old_records_decode_under_newer_schemas(old: int, new: int) -> None:
    data = written_with(old, record())
    body = io.BytesIO(data[schemas.HEADER_BYTES :])

    decoded = fastavro.schemaless_reader(
        body, parse(VERSIONS[old]), parse(VERSIONS[new])
    )

    assert isinstance(decoded, dict)
    assert decoded["requests"] == 1
    assert {f["name"] for f in parse(VERSIONS[new])["fields"]} == set(decoded)


def test_a_v1_record_keeps_the_identity_it_was_stored_under() -> None:
    data = written_with(0, record())

    decoded = schemas.codec(NAME).decode(data)

    # Sinks hold the joined identity of records written before schemes.
    assert decoded["identity_scheme"] == IDENTITY_JOINED
    assert identity(
        decoded
    ) == "llm.spans[0]|1750000020000|acme|svc|{}|{}|chat|7".format(
        decoded["provider"], decoded["model"]
    )


def test_new_records_round_trip_with_the_hashed_identity() -> None:
    codec = schemas.codec(NAME)
    original = record()

    decoded = codec.decode(codec.encode(original))

    assert decoded == original
    assert decoded["identity_scheme"] == IDENTITY_SHA256
    assert identity(decoded) == identity(original)
    assert len(identity(decoded)) == 64
