"""Rebalances against running decisions: wait, forget, never decide twice."""

from __future__ import annotations

import asyncio

from streams.sampling.decisions import Decision
from tests.streams.sampling.harness import KEEP_ALL, Harness
from tests.streams.sampling.spanbatches import trace_in_batches


async def held_up_decision(h: Harness) -> asyncio.Task[int]:
    """A tick whose first delivery waits until the test opens the gate."""
    h.gate.clear()
    task = asyncio.create_task(h.sampler.decide_due())
    await asyncio.wait_for(h.sending.wait(), 5)
    return task


async def test_a_revoke_waits_for_the_running_decision_then_forgets() -> None:
    h = await Harness.start(KEEP_ALL)
    first_id, first, _ = trace_in_batches(1, [[1, 0]])
    other_id, other, _ = trace_in_batches(1, [[1]])
    await h.feed(first[0], partition=0)
    await h.feed(other[0], partition=0)
    h.clock.now_s += 3
    tick = await held_up_decision(h)

    revoke = asyncio.create_task(h.sampler.revoke({0}))
    await asyncio.sleep(0.05)
    assert not revoke.done()  # the decision still holds the lock

    h.gate.set()
    await asyncio.wait_for(asyncio.gather(tick, revoke), 5)
    # The running decision completed and is durable; the other trace of the
    # revoked partition is forgotten here, left in the table for its next owner.
    assert first_id.encode() in h.store.decisions
    assert other_id not in h.sampler.buffer
    assert any(k.startswith(other_id.encode()) for k in h.store.batches)


async def test_a_tick_stops_deciding_traces_of_a_revoked_partition() -> None:
    h = await Harness.start(KEEP_ALL)
    h.sampler.decision_group = 1
    ids = []
    for partition in (0, 0, 1):
        trace_id, batches, _ = trace_in_batches(1, [[1, 0]])
        ids.append(trace_id)
        await h.feed(batches[0], partition=partition)
    h.clock.now_s += 3
    tick = await held_up_decision(h)

    revoke = asyncio.create_task(h.sampler.revoke({0, 1}))
    await asyncio.sleep(0)
    h.gate.set()
    assert await asyncio.wait_for(tick, 5) == 1
    await revoke

    assert list(h.store.decisions) == [ids[0].encode()]
    written_after = [w for w in h.store.writes if w[2].startswith(ids[1].encode())]
    assert written_after == [("batch", 0, w[2]) for w in written_after]
    assert len(h.sampler.buffer) == 0


async def test_no_state_is_written_for_a_partition_not_owned() -> None:
    h = await Harness.start(KEEP_ALL)
    await h.sampler.revoke({2})
    _, batches, _ = trace_in_batches(1, [[1, 0]])

    await h.feed(batches[0], partition=2)

    assert h.store.writes == []
    assert h.sampler.metrics.unowned_batches == 1


async def test_a_restore_during_a_decision_does_not_decide_it_again() -> None:
    h = await Harness.start(KEEP_ALL)
    trace_id, batches, span_ids = trace_in_batches(2, [[1], [2, 0]])
    await h.feed(batches[0])
    await h.feed(batches[1])
    h.clock.now_s += 3
    tick = await held_up_decision(h)

    # A recovery reads the tables while the decision waits for delivery.
    async def recover() -> list[bytes]:
        await h.sampler.revoke({0, 1, 2})
        return await h.sampler.restore(
            list(h.store.batches.items()), list(h.store.decisions.items()), {0, 1, 2}
        )

    recovery = asyncio.create_task(recover())
    await asyncio.sleep(0.05)
    h.gate.set()
    await asyncio.wait_for(asyncio.gather(tick, recovery), 5)
    h.clock.now_s += 60
    await h.sampler.decide_due()

    assert len(h.sampler.buffer) == 0
    assert h.sampler.metrics.missing_batches == 0
    assert sorted(s["span_id"] for r in h.sent for s in r["spans"]) == sorted(span_ids)
    assert Decision.decode(h.store.decisions[trace_id.encode()]).kept
