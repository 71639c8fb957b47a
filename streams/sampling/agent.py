"""Binds the sampler to a Faust app: tables, the agent on llm.spans, a timer.

State lives in two changelog-backed tables (``store.py``): ``sampling-spans``
(buffered batches) and ``sampling-decisions``. Writes name their partition
explicitly (the trace's input partition), because decisions are also made by
the timer, outside any stream event. On a rebalance the revoke waits for the
running decision, then the revoked partitions' traces are forgotten here and
recovered from the tables by their new owner.

Input is taken in batches; a batch is acknowledged only once its writes
and deliveries are confirmed by Kafka, so a committed offset is never ahead
of the changelog.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import faust

import schemas
from llmobs import topics
from llmobs.errors import ConfigError
from llmobs.retry import ShutdownRequested
from streams.acks import withhold_acks
from streams.sampling import config
from streams.sampling.emit import FRAMING_BYTES, Emitter
from streams.sampling.sampler import Sampler
from streams.sampling.settings import SamplingSettings
from streams.sampling.state import parse_batch_key
from streams.sampling.store import TableStore, table_options

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]

SPANS_TABLE = "sampling-spans"
DECISIONS_TABLE = "sampling-decisions"


async def process(sampler: Sampler, events: Sequence[Any]) -> None:
    """Buffer one batch of events; withhold the acks of what is not durable."""
    records = [(e.message.partition, e.message.offset, e.value) for e in events]
    try:
        not_durable = await sampler.on_records(records)
    except BaseException:
        # Unknown how far its writes got: nothing of this batch may commit.
        withhold_acks(events)
        raise
    withhold_acks(e for e in events if e.message.partition in not_durable)


def register(
    app: faust.App,
    settings: SamplingSettings,
    input_topic: str = topics.SPANS,
    dlq_topic: str = topics.DLQ,
) -> Sampler | None:
    """Declare the sampling tables, agent and timer on ``app``.

    The tables get ``app.conf.topic_partitions`` partitions, which must equal
    the partitions of ``input_topic``. Kept records too large for Kafka go
    to ``dlq_topic``. Returns None when sampling is disabled.
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
    dlq = app.topic(dlq_topic, key_type=bytes, value_type=bytes)
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

    async def dead_letter(key: bytes, value: bytes, headers: Headers) -> Any:
        return await dlq.send(key=key, value=value, headers=headers)

    store = TableStore(spans_table, decisions_table)
    codec = schemas.codec(schemas.SPAN_BATCH)
    max_record_bytes = app.conf.producer_max_request_size - FRAMING_BYTES
    emitter = Emitter(send, codec, max_record_bytes, dead_letter, input_topic)
    sampler = Sampler(settings, policies, codec, store, emitter)

    @app.agent(source, name="sampling")
    async def sample(stream: Any) -> None:
        async for events in stream.take_events(
            settings.sampling_batch_records, within=settings.sampling_batch_wait_s
        ):
            # Acknowledged when this body returns: by then Kafka has the
            # batch's writes and deliveries.
            try:
                await process(sampler, events)
            except Exception as exc:
                # Its acks withheld, the partition cannot move on in this
                # process; a restarted worker reads the batch again.
                await app.crash(exc)
                raise

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
        # Faust runs this in a task whose errors nobody reads: report them.
        try:
            check_partitions(
                input_topic,
                app.consumer.topic_partitions(input_topic),
                _changelog_partitions(app, [spans_table, decisions_table]),
            )
            batches = _owned(spans_table.data, partitions)
            # On disk, decisions are read when a late span asks for one.
            decisions = [] if store.decisions_on_disk else decisions_table.data.items()
            await sampler.restore(batches, list(decisions), partitions)
        except ShutdownRequested:
            log.info("sampler recovery cut short by another rebalance")
        except Exception as exc:
            await app.crash(exc)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def revoked(sender: Any, partitions: Any, **kwargs: Any) -> None:
        # Faust flushed its producer before this signal: whatever a decision
        # still writes is confirmed before the new owner may recover.
        await sampler.revoke(
            {tp.partition for tp in partitions if tp.topic == input_topic}
        )

    return sampler


def check_partitions(
    input_topic: str,
    input_partitions: int | None,
    changelogs: Iterable[tuple[str, int | None]],
) -> None:
    """Refuse to run when the tables are not partitioned like the input.

    A trace's state lives in the table partition numbered like the input
    partition its spans arrive on; any other count would mix traces up.
    ``changelogs`` pairs each changelog topic with a partition count it has
    or is configured with (None: not known yet).
    """
    if input_partitions is None:
        return
    for changelog, count in changelogs:
        if count is not None and count != input_partitions:
            raise ConfigError(
                f"sampling table changelog {changelog} has {count} partitions"
                f" but its input topic {input_topic} has {input_partitions}:"
                " they must be equal (set topic_partitions to"
                f" {input_partitions}, or recreate {changelog})"
            )


def _changelog_partitions(app: Any, tables: list[Any]) -> list[tuple[str, int | None]]:
    """Each table's changelog with its configured, then its actual, count."""
    pairs: list[tuple[str, int | None]] = []
    for table in tables:
        name = table.changelog_topic_name
        pairs += [(name, table.partitions), (name, app.consumer.topic_partitions(name))]
    return pairs


def _owned(data: Any, partitions: set[int]) -> list[tuple[bytes, bytes]]:
    """Batches of the owned partitions; stale ones of other partitions go."""
    owned = []
    for key, value in list(data.items()):
        if parse_batch_key(key)[1] in partitions:
            owned.append((key, value))
        else:
            data.pop(key, None)
    return owned
