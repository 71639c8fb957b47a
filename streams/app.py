"""The Faust application: ``otlp_spans`` in, ``llm.spans`` and ``llm.dlq`` out.

Decoding prices every span with a ``Pricer`` built once from the settings.

Input is consumed in small batches; every record derived from a batch is
delivered before the batch is acknowledged, so Faust commits an input offset
only once its output is in Kafka (at-least-once; the sinks are idempotent).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
from aiokafka.errors import MessageSizeTooLargeError, RecordListTooLargeError
from faust.types import StreamT

from llmobs.errors import RetriableStageError
from llmobs.logs import throttle_repeats
from llmobs.prometheus import CONTENT_TYPE, Exposition
from llmobs.retry import Backoff, retry_async
from llmobs.settings import describe
from streams.acks import withhold_acks
from streams.cost import STATUSES, Pricer
from streams.decode import DeadLetter, Decoded, Source, decode_message
from streams.gapless import GaplessTransport
from streams.metrics.agent import register as register_metrics
from streams.metrics.settings import MetricsSettings
from streams.sampling.agent import register as register_sampling
from streams.sampling.settings import SamplingSettings
from streams.settings import StreamSettings

log = logging.getLogger(__name__)

# Distinct unknown (provider, model) pairs reported on /metrics; later ones
# are counted under "_other" so a flood of odd names cannot blow up series.
MAX_UNKNOWN_MODELS = 100
OTHER = "_other"


class StageCounters:
    """Running totals of the decode stage, served at /metrics."""

    def __init__(self) -> None:
        self.messages = 0
        self.spans = 0
        self.genai_spans = 0
        self.batches_out = 0
        self.dead_letters: Counter[str] = Counter()
        self.cost_statuses: Counter[str] = Counter(dict.fromkeys(STATUSES, 0))
        self.unknown_models: Counter[tuple[str, str]] = Counter()

    def add(self, decoded: Decoded) -> None:
        self.messages += 1
        self.spans += decoded.spans
        self.genai_spans += decoded.genai_spans
        self.batches_out += len(decoded.batches)
        for letter in decoded.dead_letters:
            self.dead_letters[letter.reason] += 1
        self.cost_statuses.update(decoded.cost_statuses)
        for key, count in decoded.unknown_models.items():
            if (
                key not in self.unknown_models
                and len(self.unknown_models) >= MAX_UNKNOWN_MODELS
            ):
                key = (OTHER, OTHER)
            self.unknown_models[key] += count

    def prometheus(self) -> str:
        out = Exposition()
        for name, help_text, value in (
            ("messages", "Input messages decoded.", self.messages),
            ("spans", "Spans decoded.", self.spans),
            ("genai_spans", "Spans with GenAI fields.", self.genai_spans),
            ("batches_out", "Span batch records produced.", self.batches_out),
        ):
            out.single(f"llmobs_decode_{name}_total", "counter", help_text, value)
        out.family(
            "llmobs_decode_dead_letters_total",
            "counter",
            "Input set aside to the dead-letter topic, by reason.",
            [({"reason": r}, n) for r, n in sorted(self.dead_letters.items())],
        )
        out.family(
            "llmobs_cost_status_total",
            "counter",
            "Spans by cost status.",
            [({"status": s}, n) for s, n in sorted(self.cost_statuses.items())],
        )
        out.family(
            "llmobs_cost_unknown_model_spans_total",
            "counter",
            "Model calls without a price, by provider and model.",
            [
                ({"provider": provider, "model": model}, count)
                for (provider, model), count in sorted(self.unknown_models.items())
            ],
        )
        return out.text()


def decode_safely(
    value: Any, headers: Any, where: Source, pricer: Pricer | None = None
) -> Decoded:
    """``decode_message``, with a failure of our own turned into a dead letter.

    An unexpected exception would make Faust restart the agent and skip the
    message; dead-lettering it keeps the message and the partition moving.
    """
    try:
        return decode_message(value, headers, where, pricer)
    except Exception as exc:  # any bug of ours must not lose input
        log.exception("decoding %s failed unexpectedly", where)
        decoded = Decoded()
        decoded.dead_letters.append(
            DeadLetter("internal_error", type(exc).__name__, value or b"", 0)
        )
        return decoded


@dataclass
class Outgoing:
    """One record to produce, kept until the broker confirmed it."""

    topic: Any
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] | None = None
    # Sent in its place when the broker can never take it (too large).
    instead: Outgoing | None = None


# Broker answers that no retry can change: the record will never fit.
TOO_LARGE = (MessageSizeTooLargeError, RecordListTooLargeError)
UNDELIVERABLE = "undeliverable"


DELIVERY_BACKOFF = Backoff(initial_s=0.5, max_s=15.0, deadline_s=math.inf)


async def deliver(records: list[Outgoing]) -> None:
    """Produce ``records``; resend the failed ones until all are delivered."""
    remaining = records

    async def send_remaining() -> None:
        nonlocal remaining
        results = await asyncio.gather(
            *(_send(record) for record in remaining), return_exceptions=True
        )
        failed = [
            (record, result)
            for record, result in zip(remaining, results, strict=True)
            if isinstance(result, Exception)
        ]
        remaining = _in_place_of_too_large(failed)
        if failed:
            raise RetriableStageError(
                f"{len(failed)} of {len(results)} records not delivered: "
                f"{type(failed[0][1]).__name__}: {failed[0][1]}"
            )

    await retry_async(
        "delivering decoded records",
        send_remaining,
        (RetriableStageError,),
        DELIVERY_BACKOFF,
    )


def _in_place_of_too_large(
    failed: Sequence[tuple[Outgoing, BaseException]],
) -> list[Outgoing]:
    """The records to send again: each failed one, or what stands in for it."""
    again: list[Outgoing] = []
    stand_ins: set[int] = set()
    for record, error in failed:
        if not isinstance(error, TOO_LARGE) or record.instead is None:
            again.append(record)
            continue
        if id(record.instead) not in stand_ins:
            stand_ins.add(id(record.instead))
            log.warning(
                "a %d-byte record is too large for the broker (%s); "
                "its input goes to the dead-letter topic",
                len(record.value),
                type(error).__name__,
            )
            again.append(record.instead)
    return again


async def deliver_or_withhold(records: list[Outgoing], events: Sequence[Any]) -> None:
    """Deliver the records made from ``events``; if cut short, withhold their ack.

    Delivery is retried until Kafka has every record, so only a cancellation
    at shutdown ends it early; the input is then read again after restart.
    """
    try:
        await deliver(records)
    except BaseException:
        withhold_acks(events)
        raise


async def _send(record: Outgoing) -> Any:
    future = await record.topic.send(
        key=record.key, value=record.value, headers=record.headers
    )
    return await future


def create_app(
    settings: StreamSettings,
    sampling: SamplingSettings | None = None,
    metrics_settings: MetricsSettings | None = None,
) -> faust.App:
    """Build the Faust app: decode agent, tail sampler, windowed metrics."""
    data_dir = Path(settings.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        datadir=str(data_dir / settings.app_id),
        store="memory://",
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_max_request_size=16 * 1024 * 1024,
        web_enabled=settings.web_enabled,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        broker_commit_every=1000,
        broker_commit_interval=1.0,
    )
    app.transport = GaplessTransport(app.conf.broker_consumer, app)
    source = app.topic(settings.input_topic, key_type=bytes, value_type=bytes)
    spans_out = app.topic(settings.spans_topic, key_type=bytes, value_type=bytes)
    dlq_out = app.topic(settings.dlq_topic, key_type=bytes, value_type=bytes)
    counters = StageCounters()
    pricer = Pricer.from_settings(settings)
    app.llmobs_counters = counters  # type: ignore[attr-defined]

    @app.agent(source, name="decode")
    async def decode(stream: StreamT[bytes]) -> None:
        # take_events exists on faust's Stream but not on its StreamT protocol.
        async for events in stream.take_events(  # type: ignore[attr-defined]
            settings.batch_messages, within=settings.batch_wait_s
        ):
            outgoing: list[Outgoing] = []
            for event in events:
                message = event.message
                where = Source(
                    message.topic,
                    message.partition,
                    message.offset,
                    int(message.timestamp * 1000) if message.timestamp else None,
                )
                decoded = decode_safely(event.value, event.headers, where, pricer)
                counters.add(decoded)
                too_large = DeadLetter(
                    UNDELIVERABLE,
                    "a decoded record exceeds the broker's message size limit",
                    event.value or b"",
                    decoded.spans,
                )
                instead = Outgoing(
                    dlq_out, message.key, too_large.value, too_large.headers(where)
                )
                for key, value in decoded.batches:
                    outgoing.append(
                        Outgoing(spans_out, key.encode(), value, instead=instead)
                    )
                for letter in decoded.dead_letters:
                    log.warning(
                        "dead-lettered %s: %s (%d spans)",
                        where,
                        letter.reason,
                        letter.spans,
                    )
                    value = letter.value or event.value or b""
                    headers = letter.headers(where)
                    outgoing.append(Outgoing(dlq_out, message.key, value, headers))
            await deliver_or_withhold(outgoing, events)

    sampler = (
        register_sampling(app, sampling, settings.spans_topic, settings.dlq_topic)
        if sampling
        else None
    )
    aggregator = (
        register_metrics(app, metrics_settings, settings.spans_topic)
        if metrics_settings
        else None
    )

    @app.task
    async def throttle_log_repeats() -> None:
        # The worker sets up its own log handlers when it starts.
        throttle_repeats()

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        text = counters.prometheus()
        consumer = Exposition()
        consumer.single(
            "llmobs_consumer_rewinds_total",
            "counter",
            "Seeks back to records the consumer skipped around a rebalance.",
            getattr(app.consumer, "rewinds", 0),
        )
        text += consumer.text()
        if sampler is not None:
            text += sampler.metrics.prometheus()
        if aggregator is not None:
            text += aggregator.prometheus()
        return web.text(text, headers={"Content-Type": CONTENT_TYPE})

    log.info(
        "streams app %s: %s -> %s (bad input to %s); %s",
        settings.app_id,
        settings.input_topic,
        settings.spans_topic,
        settings.dlq_topic,
        describe(settings),
    )
    return app
