"""Windows saved key by key: exact after a crash at any write, and small."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from streams.metrics.state import SavedState, Write
from streams.metrics.window import PartitionWindows, identity
from tests.streams.metrics.test_window import (
    MIN_NS,
    T0_NS,
    WINDOW_S,
    check_exact,
    workload,
)

SOURCE = "llm.spans[0]"


class Crash(Exception):
    """The worker dies here."""


class Run:
    """One worker's life against a durable changelog, until it crashes."""

    def __init__(
        self,
        changelog: dict[bytes, bytes],
        rng: random.Random,
        bucket_spans_max: int | None = None,
    ) -> None:
        self.changelog = changelog
        self.rng = rng
        self.crash_in = rng.randint(1, 40)
        windows = PartitionWindows(SOURCE, WINDOW_S, grace_s=5)
        if bucket_spans_max is not None:
            windows.bucket_spans_max = bucket_spans_max
        self.state = SavedState(0, windows)
        self.state.restore(dict(changelog))

    def write(self, writes: list[Write]) -> None:
        """Confirmed as a whole, or a crash leaving any part of it durable."""
        self.crash_in -= 1
        if self.crash_in == 0:
            for w in writes:
                if self.rng.random() < 0.5:
                    self.apply(w)
            raise Crash
        for w in writes:
            self.apply(w)

    def apply(self, w: Write) -> None:
        if w.value is None:
            self.changelog.pop(w.key, None)
        else:
            self.changelog[w.key] = w.value

    def cycle(self, now_ms: int, delivered: list[dict[str, Any]]) -> None:
        """Close, save, deliver and clean up, as the agent does."""
        state = self.state
        state.windows.close(now_ms)
        self.write(state.changes())
        self.write(state.commit())
        state.committed()
        records = list(state.windows.outbox)
        if records:
            self.crash_in -= 1
            if self.crash_in == 0:
                delivered += records[: self.rng.randrange(len(records) + 1)]
                raise Crash
            delivered += records
            state.sent(records)
        self.write(state.cleanup())
        state.cleaned()


def without_emit_time(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "emitted_unix_ms"}


def deliver_through_crashes(
    rng: random.Random,
    batches: list[dict[str, Any]],
    bucket_spans_max: int | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """Count ``batches`` through workers that crash at random writes; the
    distinct records delivered, and how many crashes."""
    changelog: dict[bytes, bytes] = {}
    delivered: list[dict[str, Any]] = []
    committed = 0  # the next input offset the group would read
    now_ms = T0_NS // 10**6
    crashes = 0
    run = Run(changelog, rng, bucket_spans_max)
    offset = committed
    while True:
        try:
            if offset >= len(batches):
                # A slot split in a save closes at the next.
                while run.state.windows.open or run.state.windows.corrections:
                    run.cycle(now_ms + 10 * 60_000, delivered)
                run.cycle(now_ms + 10 * 60_000, delivered)
                break
            size = rng.randint(1, 9)
            for o in range(offset, min(offset + size, len(batches))):
                run.state.windows.apply(o, batches[o])
            offset = min(offset + size, len(batches))
            now_ms += rng.randint(0, 40_000)
            run.cycle(now_ms, delivered)
            committed = offset  # acknowledged only now
        except Crash:
            crashes += 1
            run = Run(changelog, rng, bucket_spans_max)
            run.crash_in = 10**9 if crashes >= 6 else run.crash_in
            offset = committed

    unique: dict[str, dict[str, Any]] = {}
    for record in delivered:
        first = unique.setdefault(identity(record), record)
        # A record re-sent after a crash is the same record.
        assert without_emit_time(first) == without_emit_time(record)
    return list(unique.values()), crashes


@pytest.mark.parametrize("seed", range(12))
def test_crashes_at_any_write_leave_every_request_counted_once(seed: int) -> None:
    rng = random.Random(seed)
    batches = workload(rng, 150)

    records, crashes = deliver_through_crashes(rng, batches)

    check_exact(records, batches)
    assert crashes >= 1


def test_a_state_of_many_windows_is_saved_in_small_values() -> None:
    # The fault: the whole partition was one changelog value, past the
    # broker's 1 MB message limit from about a thousand open windows.
    rng = random.Random(7)
    windows = PartitionWindows(SOURCE, WINDOW_S, grace_s=5)
    state = SavedState(0, windows)
    for offset, batch in enumerate(workload(rng, 3000)):
        batch["tenant"] = f"tenant-{offset}"
        windows.apply(offset, batch)
    assert len(windows.open) > 3000

    writes = state.changes() + state.commit()

    assert max(len(w.value or b"") for w in writes) < 64_000
    state.committed()
    windows.apply(3000, workload(rng, 1)[0])
    # Only what changed is written again.
    assert len(state.changes()) <= 3


def test_a_state_saved_as_one_value_is_read_and_rewritten_key_by_key() -> None:
    rng = random.Random(8)
    batches = workload(rng, 40)
    snapshot = {
        "v": 1,
        "applied_offset": 29,
        "closed_before_ms": T0_NS // 10**6 + MIN_NS // 10**6,
        "open": [],
        "corrections": [],
        "outbox": [],
    }
    early = PartitionWindows(SOURCE, WINDOW_S, grace_s=5)
    for offset, batch in enumerate(batches[:30]):
        early.apply(offset, batch)
    early.close(now_ms=T0_NS // 10**6 + 70_000)
    for slot, bucket in early.open.items():
        snapshot["open"].append(
            bucket.to_record(slot[1], slot[0], WINDOW_S, SOURCE, "window")
        )
    # Written before identity schemes existed.
    snapshot["outbox"] = [
        {k: v for k, v in r.items() if k != "identity_scheme"} for r in early.outbox
    ]
    changelog = {b"0": orjson.dumps(snapshot, default=str)}

    state = SavedState(0, PartitionWindows(SOURCE, WINDOW_S, grace_s=5))
    state.restore(changelog)
    for offset, batch in enumerate(batches):
        state.windows.apply(offset, batch)
    state.windows.close(now_ms=T0_NS // 10**6 + 10 * 60_000)
    writes = state.changes() + state.commit()
    state.committed()
    out = list(state.windows.outbox)
    state.sent(out)
    writes += state.cleanup()

    assert Write(b"0", None) in writes
    # Sent before, the old outbox keeps the identity sinks stored it under.
    assert {r["identity_scheme"] for r in out[: len(early.outbox)]} == {1}
    check_exact(out, batches)
