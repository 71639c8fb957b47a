"""Keeping trace ids by hash, and the odds that a policy set keeps a trace.

A probabilistic policy keeps a trace as the OpenTelemetry Collector's tail
sampler does, so that a migrated configuration keeps the same traces: the
FNV-1a 64-bit hash of the salt followed by the 16 bytes of the trace id, at
most the sampling ratio scaled onto the 64-bit range (``threshold``).

A policy's condition on the id is a ``Term``: for each salt, the threshold
the hash must meet (the empty term always holds). Terms of one salt are
nested, those of different salts are independent, so the chance of any
union of terms is exact by inclusion and exclusion.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Mapping, Sequence
from fractions import Fraction

HASH_SPACE = 1 << 64
MAX_HASH = HASH_SPACE - 1
# The Collector's salt when none is configured.
DEFAULT_SALT = "default-hash-seed"
_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
# Beyond this many distinct terms the union assumes them independent.
EXACT_UNION_TERMS = 10

# salt -> threshold the trace id's hash must not exceed
Term = Mapping[bytes, int]
ALWAYS: Term = {}


def threshold(ratio: float) -> int:
    """The Collector's threshold for ``ratio``.

    It computes MaxUint64 * ratio with Go's big.Float at 64 bits of
    precision (rounded to nearest, ties to even), then truncates to uint64.
    """
    exact = Fraction(MAX_HASH) * Fraction(ratio)
    if exact <= 0:
        return 0
    exponent = exact.numerator.bit_length() - exact.denominator.bit_length()
    if Fraction(2) ** exponent > exact:
        exponent -= 1
    unit = Fraction(2) ** (exponent - 63)
    return min(MAX_HASH, math.floor(round(exact / unit) * unit))


def fnv1a_64(data: bytes, state: int = _FNV_OFFSET) -> int:
    for byte in data:
        state = ((state ^ byte) * _FNV_PRIME) & MAX_HASH
    return state


@functools.cache
def _salted(salt: bytes) -> int:
    return fnv1a_64(salt)


def trace_hash(salt: bytes, trace_id: str) -> int:
    """FNV-1a 64 of the salt then the trace id's bytes, as the Collector."""
    try:
        data = bytes.fromhex(trace_id)
    except ValueError:
        data = trace_id.encode()
    return fnv1a_64(data, _salted(salt))


def passes(hash_value: int, limit: int) -> bool:
    return hash_value <= limit


def chance(term: Term) -> float:
    """Probability that a random trace id satisfies ``term``."""
    return math.prod((limit + 1) / HASH_SPACE for limit in term.values())


def both(a: Term, b: Term) -> Term:
    """The term satisfied when ``a`` and ``b`` are."""
    merged = dict(a)
    for salt, limit in b.items():
        merged[salt] = min(limit, merged.get(salt, limit))
    return merged


def union_chance(terms: Sequence[Term]) -> float:
    """Probability that a random trace id satisfies any of ``terms``."""
    distinct = list({tuple(sorted(t.items())): t for t in terms}.values())
    if not distinct:
        return 0.0
    if any(not term for term in distinct):
        return 1.0
    if len(distinct) > EXACT_UNION_TERMS:
        return 1.0 - math.prod(1.0 - chance(t) for t in distinct)
    total = 0.0
    for size in range(1, len(distinct) + 1):
        sign = 1.0 if size % 2 else -1.0
        for combo in itertools.combinations(distinct, size):
            joint: Term = ALWAYS
            for term in combo:
                joint = both(joint, term)
            total += sign * chance(joint)
    return min(1.0, max(0.0, total))
