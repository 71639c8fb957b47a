"""Which spans a partition's windows counted, so that each span counts once.

llm.spans is at-least-once: the decode stage re-produces what it had not
committed when it died, and exporters retry. A span is known by an 8-byte
hash of (tenant, trace id, span id); only model requests, the spans the
windows count, are hashed. Per window start, the identities counted are:

- ``live``: those of the window's buckets and of its records not yet sealed,
  each saved inside the changelog value that holds its counts;
- sealed ``Chunk``s: sorted arrays of the identities of records already
  saved, kept until both the wall clock and the receipt time of the
  partition's input are ``dedup_horizon_s`` past the sealing (and at least
  until the window closed), then forgotten, so a copy arriving later counts
  again.

A duplicate is looked up in its own window only (a copy ends when the span
ends): on-time spans never search the sealed chunks of closed windows.
"""

from __future__ import annotations

import base64
import hashlib
import struct
import sys
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import orjson

HASH_TYPECODE = "Q"
HASH_BYTES = 8
# A chunk's value: version, window start ms, sealed ms, then the hashes
# (little-endian, ascending).
CHUNK_HEADER = struct.Struct("<Bqq")
CHUNK_VERSION = 1
# 256 KiB of hashes: far below the broker's message size limit.
CHUNK_HASHES_MAX = 32_768
# Chunks of a window below CHUNK_HASHES_MAX before they are merged, which
# bounds the keys and the lookups a trickle of corrections makes.
SMALL_CHUNKS_MAX = 8


def trace_hasher(tenant: str, trace_id: str) -> hashlib.blake2b:
    """A hasher of the trace's spans; ``span_hash`` finishes it per span."""
    # A JSON array ends where it ends: the span id cannot shift into it.
    return hashlib.blake2b(orjson.dumps([tenant, trace_id]), digest_size=HASH_BYTES)


def span_hash(trace: hashlib.blake2b, span_id: str) -> int:
    """The identity of span ``span_id`` of the trace ``trace`` hashes."""
    hasher = trace.copy()
    hasher.update(span_id.encode())
    return int.from_bytes(hasher.digest(), "little")


def hashes_to_text(hashes: array) -> str:
    """``hashes`` as base64 of their little-endian bytes, for a JSON value."""
    return base64.b64encode(_to_bytes(hashes)).decode()


def hashes_from_text(text: str | None) -> array:
    """The hashes ``hashes_to_text`` wrote; none for values saved before."""
    return _from_bytes(base64.b64decode(text)) if text else array(HASH_TYPECODE)


@dataclass(frozen=True, eq=False)
class Chunk:
    """Sealed identities of one window: sorted, saved under their own key."""

    window_start_ms: int
    sealed_ms: int
    hashes: array
    # The changelog name: a digest of the value, so a value is never
    # overwritten by another.
    name: bytes = field(init=False)

    def __post_init__(self) -> None:
        digest = hashlib.sha256(self.to_bytes()).hexdigest()[:32]
        object.__setattr__(self, "name", digest.encode())

    def holds(self, span: int) -> bool:
        i = bisect_left(self.hashes, span)
        return i < len(self.hashes) and self.hashes[i] == span

    def to_bytes(self) -> bytes:
        head = CHUNK_HEADER.pack(CHUNK_VERSION, self.window_start_ms, self.sealed_ms)
        return head + _to_bytes(self.hashes)

    @classmethod
    def from_bytes(cls, data: bytes) -> Chunk:
        version, window_start_ms, sealed_ms = CHUNK_HEADER.unpack_from(data)
        if version != CHUNK_VERSION:
            raise ValueError(f"span identity chunk version {version} unknown")
        return cls(window_start_ms, sealed_ms, _from_bytes(data[CHUNK_HEADER.size :]))


class WindowSpans:
    """The identities counted in one window of one partition."""

    __slots__ = ("chunks", "live")

    def __init__(self) -> None:
        self.live: set[int] = set()
        self.chunks: dict[bytes, Chunk] = {}

    def __contains__(self, span: int) -> bool:
        return span in self.live or self.sealed(span)

    def sealed(self, span: int) -> bool:
        """Whether a sealed chunk holds ``span``."""
        return any(chunk.holds(span) for chunk in self.chunks.values())

    def __len__(self) -> int:
        return len(self.live) + sum(len(c.hashes) for c in self.chunks.values())


@dataclass
class _Sealing:
    """What the save under way seals: chunks written, chunks they replace."""

    new: list[Chunk] = field(default_factory=list)
    replaced: list[Chunk] = field(default_factory=list)
    records: int = 0


class SeenSpans:
    """The identities of one partition's windows, and what a save writes."""

    def __init__(self, horizon_ms: int) -> None:
        self.horizon_ms = horizon_ms
        self.windows: dict[int, WindowSpans] = {}
        # (window start, identities, restored) of records no chunk is known
        # to hold: a restored record's may be sealed already.
        self.unsealed: list[tuple[int, array, bool]] = []
        self._sealing = _Sealing()
        # Chunks to delete: merged into others, or past the horizon.
        self._retired: list[Chunk] = []
        self._expiring: list[Chunk] = []

    def window(self, window_start_ms: int) -> WindowSpans:
        spans = self.windows.get(window_start_ms)
        if spans is None:
            spans = self.windows[window_start_ms] = WindowSpans()
        return spans

    def held(self, window_start_ms: int, hashes: Iterable[int]) -> None:
        """A restored bucket or record counted ``hashes``."""
        self.window(window_start_ms).live.update(hashes)

    def emitted(
        self, window_start_ms: int, hashes: array, restored: bool = False
    ) -> None:
        """A record holds ``hashes``; seal them once it is saved."""
        self.unsealed.append((window_start_ms, hashes, restored))

    def load(self, chunk: Chunk) -> None:
        """A chunk read back from the changelog."""
        self.window(chunk.window_start_ms).chunks[chunk.name] = chunk

    def seal(self, now_ms: int) -> list[Chunk]:
        """Chunks of the records' identities, to write once they are saved."""
        fresh: dict[int, set[int]] = {}
        for window_start_ms, hashes, restored in self.unsealed:
            spans = self.window(window_start_ms)
            fresh.setdefault(window_start_ms, set()).update(
                (h for h in hashes if not spans.sealed(h)) if restored else hashes
            )
        sealing = _Sealing(records=len(self.unsealed))
        for window_start_ms, identities in sorted(fresh.items()):
            spans = self.window(window_start_ms)
            new = sorted(identities)
            if not new:
                continue
            pieces = [
                Chunk(window_start_ms, now_ms, array(HASH_TYPECODE, part))
                for part in _parts(new)
            ]
            small = [c for c in spans.chunks.values() if _small(c)]
            if len(small) + sum(1 for c in pieces if _small(c)) > SMALL_CHUNKS_MAX:
                pieces = [c for c in pieces if not _small(c)] + _merged(
                    window_start_ms, small + [c for c in pieces if _small(c)]
                )
                sealing.replaced += small
            sealing.new += pieces
        self._sealing = sealing
        return list(sealing.new)

    def sealed(self) -> None:
        """The chunks of ``seal`` are saved: the records may go."""
        sealing = self._sealing
        new = {c.name for c in sealing.new}
        for chunk in sealing.replaced:
            self.window(chunk.window_start_ms).chunks.pop(chunk.name, None)
            # A merge may come out as one of the chunks it merged.
            if chunk.name not in new:
                self._retired.append(chunk)
        for chunk in sealing.new:
            self.window(chunk.window_start_ms).chunks[chunk.name] = chunk
        for window_start_ms, hashes, _ in self.unsealed[: sealing.records]:
            self.window(window_start_ms).live.difference_update(hashes)
        del self.unsealed[: sealing.records]
        self._sealing = _Sealing()

    def expire(self, now_ms: int, closed_before_ms: int) -> list[Chunk]:
        """Chunks to delete: merged into others, or of closed windows and
        sealed more than the horizon before ``now_ms``."""
        self._expiring = [
            chunk
            for window_start_ms, spans in self.windows.items()
            if window_start_ms < closed_before_ms
            for chunk in spans.chunks.values()
            if chunk.sealed_ms + self.horizon_ms <= now_ms
        ]
        return self._retired + self._expiring

    def expired(self) -> None:
        """The deletions of ``expire`` are saved."""
        for chunk in self._expiring:
            self.windows[chunk.window_start_ms].chunks.pop(chunk.name, None)
        self._retired = []
        self._expiring = []
        for window_start_ms in [w for w, s in self.windows.items() if not len(s)]:
            del self.windows[window_start_ms]

    def __len__(self) -> int:
        return sum(len(spans) for spans in self.windows.values())


def _small(chunk: Chunk) -> bool:
    return len(chunk.hashes) < CHUNK_HASHES_MAX


def _parts(hashes: list[int]) -> Iterator[list[int]]:
    for start in range(0, len(hashes), CHUNK_HASHES_MAX):
        yield hashes[start : start + CHUNK_HASHES_MAX]


def _merged(window_start_ms: int, chunks: list[Chunk]) -> list[Chunk]:
    # Kept until the youngest of them expires: never shorter than promised.
    sealed_ms = max(c.sealed_ms for c in chunks)
    union = sorted({h for c in chunks for h in c.hashes})
    return [
        Chunk(window_start_ms, sealed_ms, array(HASH_TYPECODE, part))
        for part in _parts(union)
    ]


def _to_bytes(hashes: array) -> bytes:
    if sys.byteorder == "little":
        return hashes.tobytes()
    swapped = array(HASH_TYPECODE, hashes)
    swapped.byteswap()
    return swapped.tobytes()


def _from_bytes(data: bytes) -> array:
    hashes = array(HASH_TYPECODE)
    hashes.frombytes(data)
    if sys.byteorder != "little":
        hashes.byteswap()
    return hashes
