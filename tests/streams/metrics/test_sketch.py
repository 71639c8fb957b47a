"""The DDSketch bins: accuracy, exact merges, and the encodings."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from streams.metrics.sketch import RELATIVE_ACCURACY, Sketch, exact_quantile

values = st.lists(
    st.floats(min_value=0.0, max_value=1e4, allow_nan=False), min_size=1, max_size=300
)


def sketch_of(xs: list[float]) -> Sketch:
    sketch = Sketch()
    for x in xs:
        sketch.add(x)
    return sketch


@given(values, st.sampled_from([0.0, 0.5, 0.95, 0.99, 1.0]))
def test_quantile_within_relative_accuracy(xs: list[float], q: float) -> None:
    expected = exact_quantile(xs, q)
    got = sketch_of(xs).quantile(q)
    assert got is not None
    if expected <= 1e-9:
        assert got <= 1e-9 * (1 + RELATIVE_ACCURACY)
    else:
        assert abs(got - expected) <= RELATIVE_ACCURACY * expected * (1 + 1e-9)


@given(values, values)
def test_merge_equals_sketch_of_union(a: list[float], b: list[float]) -> None:
    merged = sketch_of(a)
    merged.merge(sketch_of(b))
    union = sketch_of(a + b)
    assert merged.bins == union.bins
    assert merged.zero_count == union.zero_count


def test_record_and_json_round_trip() -> None:
    rng = random.Random(3)
    sketch = sketch_of([rng.lognormvariate(0, 2) for _ in range(500)] + [0.0, -1.0])
    for copy in (
        Sketch.from_record(sketch.to_record()),
        Sketch.from_json(sketch.to_json()),
    ):
        assert copy.bins == sketch.bins
        assert copy.zero_count == 2
        assert copy.quantile(0.9) == sketch.quantile(0.9)


def test_empty_sketch_has_no_quantile() -> None:
    assert Sketch().quantile(0.5) is None
