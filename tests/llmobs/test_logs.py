"""Log set-up: repeated warnings are held back, with a count."""

from __future__ import annotations

import logging

import pytest

from llmobs import logs
from llmobs.logs import RepeatFilter


def record(text: str, *args: object, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord("aiokafka.conn", level, __file__, 1, text, args, None)


def test_lines_differing_only_in_numbers_pass_once_per_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [100.0]
    monkeypatch.setattr(logs.time, "monotonic", lambda: clock[0])
    repeats = RepeatFilter(interval_s=30)

    passed = [
        repeats.filter(record("Unable connect to node with id %d (after %dms)", 1, n))
        for n in range(50)
    ]
    clock[0] += 31
    late = record("Unable connect to node with id %d (after %dms)", 2, 7)

    assert passed == [True] + [False] * 49
    assert repeats.filter(late)
    assert late.getMessage().endswith("(49 more like it in 31s)")


def test_other_lines_and_info_are_never_held_back() -> None:
    repeats = RepeatFilter(interval_s=30)

    assert repeats.filter(record("broker down"))
    assert repeats.filter(record("topic %s missing", "a"))
    assert repeats.filter(record("topic %s missing", "b"))
    assert all(repeats.filter(record("progress", level=logging.INFO)) for _ in range(5))


def test_each_handler_gets_one_filter() -> None:
    handler = logging.NullHandler()

    logs.throttle_repeats([handler])
    logs.throttle_repeats([handler])

    assert sum(isinstance(f, RepeatFilter) for f in handler.filters) == 1
