"""The Prometheus text exposition format as our endpoints write it."""

from __future__ import annotations

import math

from llmobs.prometheus import Exposition


def test_a_family_has_help_type_and_one_line_per_sample() -> None:
    out = Exposition()
    out.family(
        "llmobs_x_total",
        "counter",
        "Things counted.",
        [({"kind": "a"}, 3), ({"kind": "b", "zone": "eu"}, 4.5)],
    )
    out.single("llmobs_y", "gauge", "A level.", 2.0)

    assert out.text() == (
        "# HELP llmobs_x_total Things counted.\n"
        "# TYPE llmobs_x_total counter\n"
        'llmobs_x_total{kind="a"} 3\n'
        'llmobs_x_total{kind="b",zone="eu"} 4.5\n'
        "# HELP llmobs_y A level.\n"
        "# TYPE llmobs_y gauge\n"
        "llmobs_y 2\n"
    )


def test_label_values_are_escaped() -> None:
    out = Exposition()
    out.family("m", "gauge", "h", [({"model": 'a"b\\c\nd'}, 1)])

    assert 'm{model="a\\"b\\\\c\\nd"} 1' in out.text()


def test_special_values_use_the_formats_spelling() -> None:
    out = Exposition()
    out.family("m", "gauge", "h", [({"v": "1"}, math.inf), ({"v": "2"}, math.nan)])

    assert 'm{v="1"} +Inf' in out.text()
    assert 'm{v="2"} NaN' in out.text()


def test_a_histogram_ends_with_inf_sum_and_count() -> None:
    out = Exposition()
    out.histogram("h_seconds", "latency", [(0.5, 1), (2, 3)], total=4.25, count=5)

    assert out.text().splitlines()[2:] == [
        'h_seconds_bucket{le="0.5"} 1',
        'h_seconds_bucket{le="2.0"} 3',
        'h_seconds_bucket{le="+Inf"} 5',
        "h_seconds_sum 4.25",
        "h_seconds_count 5",
    ]
