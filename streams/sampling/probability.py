"""Keeping trace ids by hash, and the odds that a policy set keeps a trace.

A probabilistic policy keeps a trace when the salted hash of its id falls
under a threshold. A policy's condition on the id is a ``Term``: for each
salt, the threshold the hash must meet (the empty term always holds). Terms
of one salt are nested, those of different salts are independent, so the
chance of any union of terms is exact by inclusion and exclusion.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Mapping, Sequence

HASH_SPACE = 1 << 64
# Beyond this many distinct terms the union assumes them independent.
EXACT_UNION_TERMS = 10

# salt -> threshold the trace id's hash must meet
Term = Mapping[bytes, int]
ALWAYS: Term = {}


def threshold(ratio: float) -> int:
    """The hash threshold that keeps ``ratio`` of the trace ids."""
    return min(HASH_SPACE, int(ratio * HASH_SPACE))


def trace_hash(salt: bytes, trace_id: str) -> int:
    """64-bit BLAKE2b of the salt and the trace id: uniform even for close ids."""
    try:
        data = salt + bytes.fromhex(trace_id)
    except ValueError:
        data = salt + trace_id.encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def passes(hash_value: int, limit: int) -> bool:
    return hash_value < limit


def chance(term: Term) -> float:
    """Probability that a random trace id satisfies ``term``."""
    return math.prod(limit / HASH_SPACE for limit in term.values())


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
