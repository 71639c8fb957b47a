"""The Prometheus text exposition format (0.0.4), written by hand.

A process's counters are few and live in its own objects; ``Exposition``
turns them into the text a scrape expects, one family at a time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = Mapping[str, str]


class Exposition:
    """Families of samples, rendered in the order they were added."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def family(
        self,
        name: str,
        kind: str,
        help_text: str,
        samples: Iterable[tuple[Labels, float]],
    ) -> None:
        """One metric family: its HELP and TYPE lines, then its samples."""
        self._lines.append(f"# HELP {name} {help_text}")
        self._lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            self._lines.append(f"{name}{_labels(labels)} {_number(value)}")

    def single(self, name: str, kind: str, help_text: str, value: float) -> None:
        """A family of one unlabelled sample."""
        self.family(name, kind, help_text, [({}, value)])

    def histogram(
        self,
        name: str,
        help_text: str,
        buckets: Iterable[tuple[float, int]],
        total: float,
        count: int,
    ) -> None:
        """A histogram: cumulative (upper bound, count) buckets, sum, count."""
        self._lines.append(f"# HELP {name} {help_text}")
        self._lines.append(f"# TYPE {name} histogram")
        for bound, in_bucket in buckets:
            self._lines.append(f'{name}_bucket{{le="{float(bound)}"}} {in_bucket}')
        self._lines.append(f'{name}_bucket{{le="+Inf"}} {count}')
        self._lines.append(f"{name}_sum {_number(total)}")
        self._lines.append(f"{name}_count {count}")

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{escape(v)}"' for k, v in labels.items()) + "}"


def _number(value: float) -> str:
    number = float(value)
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "+Inf" if number > 0 else "-Inf"
    if number.is_integer():
        return str(int(number))
    return repr(number)


def escape(value: str) -> str:
    """A label value with backslash, quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
