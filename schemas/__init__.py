"""Avro schemas of the internal topics and their single-object codec.

Every ``<name>.v<N>.avsc`` file beside this module is one version of a record
type. Writers use the newest version; readers accept any version they ship,
told apart by the schema fingerprint at the head of each message (Avro
single-object encoding: ``C3 01`` then the 8-byte CRC-64-AVRO fingerprint),
and resolve it to the newest version, so that old records stay readable.
"""

from __future__ import annotations

import io
import json
import re
from functools import cache
from pathlib import Path
from typing import Any, cast

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

from llmobs.errors import SchemaError

SCHEMA_DIR = Path(__file__).parent
MAGIC = b"\xc3\x01"
HEADER_BYTES = 10
_FILE = re.compile(r"^(?P<name>[a-z0-9_]+)\.v(?P<version>\d+)\.avsc$")


def schema_files(name: str) -> list[Path]:
    """All version files of record type ``name``, oldest first."""
    found = []
    for path in SCHEMA_DIR.glob(f"{name}.v*.avsc"):
        match = _FILE.match(path.name)
        if match and match["name"] == name:
            found.append((int(match["version"]), path))
    if not found:
        raise SchemaError(f"no schema files for {name} in {SCHEMA_DIR}")
    return [path for _, path in sorted(found)]


def parse(path: Path) -> dict[str, Any]:
    return cast(dict[str, Any], fastavro.parse_schema(json.loads(path.read_text())))


def schema_fingerprint(schema: dict[str, Any]) -> bytes:
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))


class Codec:
    """Encodes with the newest version of a record type, decodes any version."""

    def __init__(self, name: str) -> None:
        versions = [parse(p) for p in schema_files(name)]
        self.name = name
        self.schema = versions[-1]
        self._header = MAGIC + schema_fingerprint(self.schema)
        self._writers = {schema_fingerprint(s): s for s in versions}

    def encode(self, record: dict[str, Any]) -> bytes:
        out = io.BytesIO()
        out.write(self._header)
        fastavro.schemaless_writer(out, self.schema, record)
        return out.getvalue()

    def decode(self, data: bytes) -> dict[str, Any]:
        if len(data) < HEADER_BYTES or data[:2] != MAGIC:
            raise SchemaError(f"{self.name}: not an Avro single-object message")
        writer = self._writers.get(data[2:HEADER_BYTES])
        if writer is None:
            raise SchemaError(
                f"{self.name}: unknown schema fingerprint {data[2:HEADER_BYTES].hex()}"
            )
        body = io.BytesIO(data)
        body.seek(HEADER_BYTES)
        try:
            record = fastavro.schemaless_reader(body, writer, self.schema)
        except (EOFError, ValueError, IndexError, UnicodeDecodeError) as exc:
            raise SchemaError(f"{self.name}: corrupt record: {exc}") from exc
        if not isinstance(record, dict):
            raise SchemaError(f"{self.name}: record is not an Avro record")
        return record


@cache
def codec(name: str) -> Codec:
    """The shared codec for record type ``name`` (schemas are read once)."""
    return Codec(name)


SPAN_BATCH = "span_batch"
