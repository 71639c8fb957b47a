"""Binds the sampler to a Faust app: tables, the agent on llm.spans, a timer.

State lives in two changelog-backed tables (``store.py``): ``sampling-spans``
(buffered batches) and ``sampling-decisions``. Writes name their partition
explicitly (the trace's input partition), because decisions are also made by
the timer, outside any stream event. On a rebalance the revoke waits for the
running decision, then the revoked partitions' traces are forgotten here and
recovered from the tables by their new owner.
"""

from __future__ import annotations

import logging
from typing import Any

import faust

import schemas
from llmobs import topics
from streams.sampling import config
from streams.sampling.sampler import Sampler, parse_batch_key
from streams.sampling.settings import SamplingSettings
from streams.sampling.store import TableStore, table_options

log = logging.getLogger(__name__)

SPANS_TABLE = "sampling-spans"
DECISIONS_TABLE = "sampling-decisions"


def register(
    app: faust.App, settings: SamplingSettings, input_topic: str = topics.SPANS
) -> Sampler | None:
    """Declare the sampling tables, agent and timer on ``app``.

    The tables get ``app.conf.topic_partitions`` partitions, which must equal
    the partitions of ``input_topic``. Returns None when sampling is disabled.
    """
    if not settings.sampling_enabled:
        log.info("tail sampling disabled")
        return None
    policies = config.load(settings.policies_file)
    log.info(
        "tail sampling with policies %s, %s store",
        ", ".join(policies.names),
        settings.sampling_store,
    )

    source = app.topic(input_topic, key_type=bytes, value_type=bytes)
    sampled = app.topic(settings.sampled_topic, key_type=bytes, value_type=bytes)
    kind, partitions = settings.sampling_store, app.conf.topic_partitions
    spans_table = app.Table(
        SPANS_TABLE,
        help="buffered span batches",
        **table_options(kind, SPANS_TABLE, partitions),
    )
    decisions_table = app.Table(
        DECISIONS_TABLE,
        help="decisions",
        **table_options(kind, DECISIONS_TABLE, partitions),
    )

    async def send(key: bytes, value: bytes) -> Any:
        return await sampled.send(key=key, value=value)

    store = TableStore(spans_table, decisions_table)
    codec = schemas.codec(schemas.SPAN_BATCH)
    sampler = Sampler(settings, policies, codec, store, send)

    @app.agent(source, name="sampling")
    async def sample(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            await sampler.on_batch(message.partition, message.offset, event.value)

    @app.timer(settings.decision_tick_s, name="sampling-decide")
    async def decide_due() -> None:
        if sampler.ready:
            await sampler.decide_due()

    @spans_table.on_recover
    async def recovered() -> None:
        partitions = {
            tp.partition
            for tp in app.assignor.assigned_actives()
            if tp.topic == input_topic
        }
        batches = _owned(spans_table.data, partitions)
        decisions = list(decisions_table.data.items())
        for key in await sampler.restore(batches, decisions, partitions):
            store.delete_batch(parse_batch_key(key)[1], key)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def revoked(sender: Any, partitions: Any, **kwargs: Any) -> None:
        # Faust flushed its producer before this signal: whatever a decision
        # still writes must be done before the new owner recovers.
        await sampler.revoke(
            {tp.partition for tp in partitions if tp.topic == input_topic}
        )

    return sampler


def _owned(data: Any, partitions: set[int]) -> list[tuple[bytes, bytes]]:
    """Batches of the owned partitions; stale ones of other partitions go."""
    owned = []
    for key, value in list(data.items()):
        if parse_batch_key(key)[1] in partitions:
            owned.append((key, value))
        else:
            data.pop(key, None)
    return owned
