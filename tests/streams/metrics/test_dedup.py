"""Copies of a span in llm.spans count once: while its window is open, after
it closed (for the horizon), and through crashes at any write."""

from __future__ import annotations

import random
from typing import Any

import pytest

from llmobs.errors import ConfigError
from streams.metrics import dedup
from streams.metrics.settings import MetricsSettings
from streams.metrics.state import SavedState, Write
from streams.metrics.window import CORRECTION, PartitionWindows
from tests.streams.metrics.spans import batch, span
from tests.streams.metrics.test_state import SOURCE, deliver_through_crashes
from tests.streams.metrics.test_window import (
    MIN_NS,
    T0_NS,
    WINDOW_S,
    check_exact,
    workload,
)

T0_MS = T0_NS // 10**6
CLOSED_MS = T0_MS + 10 * 60_000


def copy_of(b: dict[str, Any], spans: list[dict[str, Any]]) -> dict[str, Any]:
    """Another llm.spans record of ``b``'s trace, holding ``spans``."""
    return {**b, "spans": spans, "source": "otlp_spans[0] 99"}


def with_copies(
    rng: random.Random, batches: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Records with copies of earlier spans among new ones, and the spans
    each counted once (the truth)."""
    records: list[dict[str, Any]] = []
    truth: list[dict[str, Any]] = []
    for b in batches:
        records.append(b)
        truth.append(b)
        if rng.random() < 0.5:
            # Often a recent one: a copy racing the save of its original.
            earlier = rng.choice(truth[-3:] if rng.random() < 0.5 else truth)
            copies = [s for s in earlier["spans"] if rng.random() < 0.7]
            end_ns = T0_NS + rng.randint(0, 3 * MIN_NS)
            fresh = [span(rng, end_ns)]
            records.append(copy_of(earlier, copies + fresh))
            truth.append(copy_of(earlier, fresh))
    return records, truth


class Saved:
    """A worker's windows and the changelog its saves would leave."""

    def __init__(self, horizon_s: float = 3600.0) -> None:
        self.changelog: dict[bytes, bytes] = {}
        self.horizon_s = horizon_s
        self.state = self.restart()
        self.delivered: list[dict[str, Any]] = []

    @property
    def windows(self) -> PartitionWindows:
        return self.state.windows

    def restart(self) -> SavedState:
        windows = PartitionWindows(SOURCE, WINDOW_S, 5, self.horizon_s)
        self.state = SavedState(0, windows)
        self.state.restore(dict(self.changelog))
        return self.state

    def write(self, writes: list[Write]) -> list[Write]:
        for w in writes:
            if w.value is None:
                self.changelog.pop(w.key, None)
            else:
                self.changelog[w.key] = w.value
        return writes

    def cycle(self, now_ms: int) -> list[Write]:
        """Close, save, deliver and clean up, as the agent does."""
        state = self.state
        state.windows.close(now_ms)
        writes = self.write(state.changes()) + self.write(state.commit())
        state.committed()
        records = list(state.windows.outbox)
        self.delivered += records
        state.sent(records)
        writes += self.write(state.cleanup())
        state.cleaned()
        return writes


def test_a_span_held_twice_in_llm_spans_counts_once() -> None:
    # The fault: a second llm.spans record with the same spans (the decode
    # stage re-producing uncommitted input, an exporter retrying) was
    # counted again, so requests, tokens and cost doubled for those spans.
    rng = random.Random(1)
    batches = workload(rng, 40)
    windows = PartitionWindows(SOURCE, WINDOW_S, grace_s=5)
    for offset, b in enumerate(batches):
        windows.apply(offset, b)

    replayed = [copy_of(b, b["spans"]) for b in batches]
    counted = sum(windows.apply(40 + i, b) for i, b in enumerate(replayed))
    windows.close(now_ms=CLOSED_MS)

    assert counted == 0
    assert windows.duplicate_spans == 40 * 4
    check_exact(windows.outbox, batches)


def test_copies_within_one_record_count_once() -> None:
    rng = random.Random(2)
    s = span(rng, T0_NS)
    windows = PartitionWindows(SOURCE, WINDOW_S, grace_s=5)

    assert windows.apply(0, batch("acme", [s, s, dict(s)])) == 1
    assert windows.duplicate_spans == 2


def test_same_span_id_in_another_trace_or_tenant_is_another_span() -> None:
    rng = random.Random(3)
    s = span(rng, T0_NS)
    windows = PartitionWindows(SOURCE, WINDOW_S, grace_s=5)
    first = batch("acme", [s])

    assert windows.apply(0, first) == 1
    assert windows.apply(1, {**first, "trace_id": "1" * 32}) == 1
    assert windows.apply(2, {**first, "tenant": "globex"}) == 1
    assert windows.duplicate_spans == 0


def test_spans_without_ids_are_all_counted() -> None:
    rng = random.Random(4)
    nameless = [{**span(rng, T0_NS), "span_id": ""} for _ in range(3)]
    windows = PartitionWindows(SOURCE, WINDOW_S, grace_s=5)

    assert windows.apply(0, batch("acme", nameless)) == 3


def test_a_copy_after_its_window_closed_makes_no_correction() -> None:
    rng = random.Random(5)
    batches = workload(rng, 30)
    worker = Saved()
    for offset, b in enumerate(batches):
        worker.windows.apply(offset, b)
    worker.cycle(CLOSED_MS)
    assert worker.changelog, "the identities were sealed"

    # A new worker holds only what the changelog does.
    worker.restart()
    for i, b in enumerate(batches):
        worker.windows.apply(30 + i, copy_of(b, b["spans"]))
    worker.cycle(CLOSED_MS + 60_000)

    assert not [r for r in worker.delivered if r["kind"] == CORRECTION]
    assert worker.windows.duplicate_spans == 30 * 4
    check_exact(worker.delivered, batches)


def received(b: dict[str, Any], at_ms: int) -> dict[str, Any]:
    """``b`` as received by the gateway at ``at_ms``."""
    return {**b, "received_unix_nano": at_ms * 1_000_000}


def test_a_copy_later_than_the_horizon_counts_again() -> None:
    rng = random.Random(6)
    first = batch("acme", [span(rng, T0_NS)])
    other = batch("acme", [span(rng, T0_NS)])
    worker = Saved(horizon_s=600)
    worker.windows.apply(0, first)
    worker.cycle(CLOSED_MS)
    worker.windows.apply(1, received(copy_of(first, first["spans"]), CLOSED_MS))
    worker.windows.apply(2, received(copy_of(other, []), CLOSED_MS + 599_000))
    worker.cycle(CLOSED_MS + 599_000)
    assert [r["kind"] for r in worker.delivered] == ["window"]

    # Input received the horizon after the seal: the identities go.
    worker.windows.apply(3, received(copy_of(other, []), CLOSED_MS + 600_000))
    writes = worker.cycle(CLOSED_MS + 600_000)
    assert any(w.key.startswith(b"0:s:") and w.value is None for w in writes)
    assert not [k for k in worker.changelog if k.startswith(b"0:s:")]
    worker.windows.apply(4, copy_of(first, first["spans"]))
    worker.cycle(CLOSED_MS + 601_000)

    assert [r["kind"] for r in worker.delivered] == ["window", CORRECTION]
    # Counted again, it is known again.
    assert len(worker.windows.seen) == 1


def test_a_backlog_read_after_an_outage_longer_than_the_horizon_is_known() -> None:
    # The fault: identities expired by the wall clock alone, so a worker
    # down longer than the horizon forgot them before it read the copies
    # waiting in its backlog, and counted those copies again.
    rng = random.Random(8)
    first = received(batch("acme", [span(rng, T0_NS)]), CLOSED_MS - 1000)
    worker = Saved(horizon_s=600)
    worker.windows.apply(0, first)
    worker.cycle(CLOSED_MS)

    worker.restart()
    worker.cycle(CLOSED_MS + 3_600_000)
    worker.windows.apply(1, copy_of(first, first["spans"]))
    worker.cycle(CLOSED_MS + 3_601_000)

    assert [r["requests"] for r in worker.delivered] == [1]
    assert worker.windows.duplicate_spans == 1


def test_a_record_saved_before_its_identities_were_sealed_keeps_them() -> None:
    rng = random.Random(11)
    spans = [span(rng, T0_NS, provider="openai", request_model="m") for _ in range(4)]
    worker = Saved()
    worker.windows.apply(0, batch("acme", spans[:2]))
    worker.cycle(T0_MS)
    worker.windows.apply(1, batch("acme", spans[2:]))
    worker.windows.close(CLOSED_MS)

    # Dies once the record is saved, before its identities are sealed.
    worker.write(worker.state.changes())
    worker.restart()
    worker.windows.apply(2, batch("acme", spans))
    worker.cycle(CLOSED_MS + 1000)

    assert sum(r["requests"] for r in worker.delivered) == 4
    assert worker.windows.duplicate_spans == 4


@pytest.mark.parametrize("seed", range(16))
def test_copies_count_once_through_crashes_at_any_write(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small bounds, so that buckets split and chunks are merged too.
    monkeypatch.setattr(dedup, "CHUNK_HASHES_MAX", (4, 8)[seed % 2])
    monkeypatch.setattr(dedup, "SMALL_CHUNKS_MAX", (1, 2)[seed // 2 % 2])
    rng = random.Random(seed)
    records, truth = with_copies(rng, workload(rng, 120))

    delivered, crashes = deliver_through_crashes(
        rng, records, bucket_spans_max=(2, 5)[seed // 4 % 2]
    )

    check_exact(delivered, truth)
    assert crashes >= 1


def test_a_full_bucket_goes_on_in_a_new_one_saved_after_its_record() -> None:
    rng = random.Random(7)
    worker = Saved()
    worker.windows.bucket_spans_max = 4
    spans = [span(rng, T0_NS, provider="openai", request_model="m") for _ in range(9)]
    spans = [{**s, "cost": {"status": "unknown_model"}} for s in spans]
    first = worker.windows.apply(0, batch("acme", spans[:3]))
    first += worker.windows.apply(1, batch("acme", spans[3:6]))
    assert not worker.windows.split

    first += worker.windows.apply(2, batch("acme", spans[6:]))

    assert first == 9
    (slot,) = worker.windows.split
    assert [r["requests"] for r, _ in worker.windows.unsaved] == [6]
    phase1 = worker.state.changes()
    assert [w.key[:4] for w in phase1] == [b"0:o:"]
    phase2 = worker.state.commit()
    assert worker.state.bucket_key(slot) in [w.key for w in phase2]
    worker.write(phase1 + phase2)
    worker.state.committed()

    # The worker dies: the next one knows every span of the slot.
    worker.restart()
    copies = batch("acme", spans[::2])
    assert worker.windows.apply(3, copies) == 0
    worker.cycle(CLOSED_MS)
    assert sum(r["requests"] for r in worker.delivered) == 9


def test_identities_are_saved_in_values_far_below_the_message_limit() -> None:
    # One key's requests pile up in one bucket while its window is open.
    rng = random.Random(8)
    worker = Saved()
    spans = [
        span(rng, T0_NS, provider="openai", request_model="m")
        for _ in range(3 * dedup.CHUNK_HASHES_MAX)
    ]
    writes: list[Write] = []
    for offset in range(0, len(spans), 100):
        worker.windows.apply(offset, batch("acme", spans[offset : offset + 100]))
        if offset % 1000 == 900:
            # A save per batch of records, as the agent takes them.
            writes += worker.cycle(T0_MS)

    writes += worker.cycle(CLOSED_MS)

    assert max(len(w.value or b"") for w in writes) < 300_000
    assert len([w for w in writes if w.key.startswith(b"0:s:")]) >= 3
    assert sum(r["requests"] for r in worker.delivered) == len(spans)
    assert len(worker.windows.seen) == len(spans)
    worker.restart()
    assert len(worker.windows.seen) == len(spans)


def test_a_trickle_of_corrections_keeps_few_chunks_per_window() -> None:
    rng = random.Random(9)
    worker = Saved()
    for minute in range(40):
        late = batch("acme", [span(rng, T0_NS + 10**9) for _ in range(3)])
        worker.windows.apply(minute, late)
        worker.cycle(CLOSED_MS + minute * 1000)

    chunks = [k for k in worker.changelog if k.startswith(b"0:s:")]
    assert len(chunks) <= dedup.SMALL_CHUNKS_MAX
    worker.restart()
    assert len(worker.windows.seen) == 40 * 3


def test_a_state_saved_without_identities_is_restored() -> None:
    rng = random.Random(10)
    worker = Saved()
    counted = worker.windows.apply(0, workload(rng, 1)[0])
    worker.write(worker.state.changes() + worker.state.commit())
    for key, value in list(worker.changelog.items()):
        if key.startswith(b"0:b:"):
            worker.changelog[key] = value.replace(b'"span_hashes"', b'"ignored"')

    worker.restart()

    assert len(worker.windows.seen) == 0
    worker.cycle(CLOSED_MS)
    assert sum(r["requests"] for r in worker.delivered) == counted == 4


def test_the_horizon_is_a_setting_that_cannot_be_negative() -> None:
    assert MetricsSettings().dedup_horizon_s == 3600.0
    with pytest.raises(ConfigError, match="dedup_horizon_s"):
        MetricsSettings(dedup_horizon_s=-1).validate()
