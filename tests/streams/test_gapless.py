"""The stream worker's consumer reads again what Faust dropped, never past it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from faust.transport.drivers import aiokafka
from faust.types import TP

from streams.gapless import GaplessConsumer, rewind_to

TP0 = TP("otlp_spans", 0)
TP1 = TP("otlp_spans", 1)
CHANGELOG = TP("app-table-changelog", 0)


@dataclass
class Record:
    topic: str
    offset: int


class Topics:
    def acks_enabled_for(self, topic: str) -> bool:
        return not topic.endswith("-changelog")


@dataclass
class App:
    topics: Topics


def consumer(
    monkeypatch: pytest.MonkeyPatch, fetches: list[list[tuple[TP, int]]]
) -> tuple[GaplessConsumer, list[tuple[TP, int]]]:
    """A consumer whose fetcher returns ``fetches``, one per getmany."""
    seeks: list[tuple[TP, int]] = []
    pending = iter(fetches)

    async def getmany(self: Any, timeout: float) -> AsyncIterator[tuple[TP, Record]]:
        for tp, offset in next(pending):
            yield tp, Record(tp.topic, offset)

    async def seek(self: Any, tp: TP, offset: int) -> None:
        seeks.append((tp, offset))
        await self._seek(tp, offset)

    async def low_seek(self: Any, tp: TP, offset: int) -> None:
        return None

    monkeypatch.setattr(aiokafka.Consumer, "getmany", getmany)
    monkeypatch.setattr(aiokafka.Consumer, "_seek", low_seek)
    monkeypatch.setattr(GaplessConsumer, "seek", seek)
    c = GaplessConsumer.__new__(GaplessConsumer)
    c.rewinds = 0
    c._expected = {}
    c._rewound_to = {}
    c.app = App(Topics())  # type: ignore[assignment]
    return c, seeks


async def read(c: GaplessConsumer) -> list[tuple[TP, int]]:
    return [(tp, m.offset) async for tp, m in c.getmany(1.0)]


@pytest.mark.parametrize(
    ("expected", "offset", "back_to"),
    [(None, 9, None), (5, 5, None), (5, 3, None), (5, 6, 5), (5, 130, 5)],
)
def test_rewind_only_past_the_offset_due(
    expected: int | None, offset: int, back_to: int | None
) -> None:
    assert rewind_to(expected, offset) == back_to


async def test_records_skipped_after_a_seek_are_fetched_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The fault: Faust dropped 107 and 108 (fetched while the partition was
    # not active), then took 109 and committed past the two never read.
    c, seeks = consumer(
        monkeypatch,
        [
            [(TP0, 109), (TP1, 40), (TP0, 110)],
            [(TP0, 107), (TP0, 108), (TP0, 109)],
        ],
    )
    c._expect(TP0, 107)

    assert await read(c) == [(TP1, 40)]
    assert seeks == [(TP0, 107)]
    assert await read(c) == [(TP0, 107), (TP0, 108), (TP0, 109)]
    assert c.rewinds == 1


async def test_a_single_skipped_record_is_read_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    c, seeks = consumer(monkeypatch, [[(TP0, 5), (TP0, 7)], [(TP0, 6), (TP0, 7)]])

    assert await read(c) == [(TP0, 5)]
    assert seeks == [(TP0, 6)]
    assert await read(c) == [(TP0, 6), (TP0, 7)]


async def test_records_gone_from_the_broker_are_passed_once_sought_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Retention deleted 10 to 19: the seek back lands on 20 again.
    c, seeks = consumer(monkeypatch, [[(TP0, 20)], [(TP0, 20), (TP0, 21)]])
    c._expect(TP0, 10)

    assert await read(c) == []
    assert await read(c) == [(TP0, 20), (TP0, 21)]
    assert seeks == [(TP0, 10)]


async def test_compacted_topics_are_left_to_faust(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    c, seeks = consumer(monkeypatch, [[(CHANGELOG, 3), (CHANGELOG, 9)]])

    assert await read(c) == [(CHANGELOG, 3), (CHANGELOG, 9)]
    assert seeks == []


async def test_without_a_committed_offset_the_first_record_sets_the_pace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    c, seeks = consumer(monkeypatch, [[(TP0, 50), (TP0, 51)]])
    c._expect(TP0, -1)

    assert await read(c) == [(TP0, 50), (TP0, 51)]
    assert seeks == []
