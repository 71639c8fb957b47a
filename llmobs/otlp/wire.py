"""Just enough of the protobuf wire format to cut a request into its pieces.

Python protobuf refuses a whole message when one string field holds invalid
UTF-8. Walking the raw fields lets the decoder parse each resource, scope and
span on its own, so one bad span costs only itself.
"""

from __future__ import annotations

from typing import NamedTuple

VARINT = 0
FIXED64 = 1
LEN = 2
FIXED32 = 5


class WireError(Exception):
    """The bytes are not a well-formed sequence of protobuf fields."""


class Field(NamedTuple):
    """One field of a message: its number, wire type and byte offsets."""

    number: int
    wire_type: int
    start: int
    value_start: int
    end: int


def fields(data: bytes) -> list[Field]:
    """Every top-level field of ``data``; raises WireError on malformed input."""
    out: list[Field] = []
    pos = 0
    size = len(data)
    while pos < size:
        start = pos
        tag, pos = _read_varint(data, pos)
        number, wire_type = tag >> 3, tag & 7
        if number == 0:
            raise WireError(f"field number 0 at byte {start}")

        value_start = pos
        if wire_type == VARINT:
            _, pos = _read_varint(data, pos)
        elif wire_type == FIXED64:
            pos += 8
        elif wire_type == LEN:
            length, value_start = _read_varint(data, pos)
            pos = value_start + length
        elif wire_type == FIXED32:
            pos += 4
        else:
            # Groups (3, 4) are not used by OTLP; 6 and 7 do not exist.
            raise WireError(f"wire type {wire_type} at byte {start}")

        if pos > size:
            raise WireError(f"field {number} runs past the end at byte {start}")
        out.append(Field(number, wire_type, start, value_start, pos))
    return out


def submessages(data: bytes, number: int) -> list[bytes]:
    """The payloads of the length-delimited fields numbered ``number``."""
    return [
        data[f.value_start : f.end]
        for f in fields(data)
        if f.number == number and f.wire_type == LEN
    ]


def without(data: bytes, number: int) -> tuple[bytes, list[bytes]]:
    """Split ``data`` into its other fields (raw) and the payloads of ``number``."""
    rest: list[bytes] = []
    taken: list[bytes] = []
    for f in fields(data):
        if f.number == number and f.wire_type == LEN:
            taken.append(data[f.value_start : f.end])
        else:
            rest.append(data[f.start : f.end])
    return b"".join(rest), taken


def encode_field(number: int, payload: bytes) -> bytes:
    """One length-delimited field: tag, length, payload."""
    return _encode_varint(number << 3 | LEN) + _encode_varint(len(payload)) + payload


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    shift = 0
    size = len(data)
    while True:
        if pos >= size:
            raise WireError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift >= 70:
            raise WireError("varint longer than 10 bytes")


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
