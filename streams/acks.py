"""Keeping input offsets out of commits until what was made from them is durable.

Faust's ``take_events`` acknowledges every event of a batch when the body
handling it exits, even when the body raised or was cancelled at shutdown,
and the consumer then commits. Every agent of the stream worker uses
``withhold_acks`` on the events whose results Kafka has not confirmed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def withhold_acks(events: Iterable[Any]) -> None:
    """Keep ``events`` from ever being acknowledged to the consumer.

    Marked acknowledged on the message alone, an event is skipped by the
    acknowledgement ``take_events`` makes, so its offset is never committed:
    commits of its partition stop short of it, and whoever reads the
    partition next reads it again.
    """
    for event in events:
        event.message.acked = True
