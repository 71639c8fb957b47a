"""Kafka side of the gateway: produce per-trace messages, confirm delivery.

A request is answered only after librdkafka reported every one of its
messages delivered. A poll thread serves the delivery reports and hands each
to the event loop, which resolves the request's futures.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from functools import partial

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from ingest.metrics import GatewayMetrics
from ingest.settings import GatewaySettings
from llmobs.errors import RetriableStageError
from llmobs.kafka import producer_config
from llmobs.otlp import Rejection
from llmobs.topics import (
    HEADER_DLQ_CONTENT_TYPE,
    HEADER_DLQ_DETAIL,
    HEADER_DLQ_REASON,
)

log = logging.getLogger(__name__)

# Content type of a dead-letter payload (OTLP protobuf or OTLP/JSON).

Headers = list[tuple[str, str | bytes | None]]

_POLL_INTERVAL_S = 0.1
# While every broker is down, one request per interval waits for Kafka to
# take it (and so finds out when Kafka is back); the others are answered
# at once.
_PROBE_INTERVAL_S = 1.0
_ERROR_LOG_INTERVAL_S = 30.0
_DLQ_DETAIL_CHARS = 500


class ProducerBusy(RetriableStageError):
    """Kafka cannot take more now: in-flight cap reached or local queue full."""


class DeliveryFailed(RetriableStageError):
    """Kafka refused a message or did not confirm it in time."""


class SpanProducer:
    """Produces trace messages and dead letters; one per gateway process."""

    def __init__(self, settings: GatewaySettings, metrics: GatewayMetrics) -> None:
        self._topic = settings.input_topic
        self._dlq_topic = settings.dlq_topic
        self._timeout_s = settings.produce_timeout_s
        self._max_inflight_bytes = settings.max_inflight_bytes
        self._metrics = metrics
        self._inflight_bytes = 0
        self._last_error_log: dict[int, float] = {}
        # Set from librdkafka's error callback, cleared by a delivery.
        self._brokers_down = False
        self._probed_s = 0.0
        # librdkafka gives up on a message when the request's caller would, so
        # a timed-out message stops taking buffer space.
        timeout_ms = max(1, int(settings.produce_timeout_s * 1000))
        self._producer = Producer(
            producer_config(
                settings.kafka_bootstrap,
                **{
                    "message.timeout.ms": timeout_ms,
                    "error_cb": self._on_error,
                },
            )
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = threading.Event()
        self._poller = threading.Thread(
            target=self._poll_forever, name="kafka-delivery-reports", daemon=True
        )

    @property
    def inflight_bytes(self) -> int:
        return self._inflight_bytes

    @property
    def brokers_down(self) -> bool:
        """Whether librdkafka reported every broker down since the last delivery."""
        return self._brokers_down

    def start(self) -> None:
        """Start serving delivery reports; call from the event loop."""
        self._loop = asyncio.get_running_loop()
        self._poller.start()

    async def send(
        self, messages: Sequence[tuple[bytes, bytes]], headers: Headers
    ) -> None:
        """Produce (key, value) messages and return once Kafka has them all.

        Raises ProducerBusy when the gateway should shed load (429) and
        DeliveryFailed when Kafka did not take the messages (503).
        """
        loop = self._require_loop()
        total_bytes = sum(len(key) + len(value) for key, value in messages)
        # An idle producer takes any request, so one larger than the cap
        # still goes through instead of being refused forever.
        if self._inflight_bytes and self._inflight_bytes + total_bytes > (
            self._max_inflight_bytes
        ):
            raise ProducerBusy(
                f"{self._inflight_bytes} bytes await confirmation, "
                f"cap {self._max_inflight_bytes}"
            )

        if self._brokers_down:
            now_s = time.monotonic()
            if now_s - self._probed_s < _PROBE_INTERVAL_S:
                raise DeliveryFailed(f"every Kafka broker of {self._topic} is down")
            self._probed_s = now_s

        futures: list[asyncio.Future[KafkaError | None]] = []
        for key, value in messages:
            size = len(key) + len(value)
            future: asyncio.Future[KafkaError | None] = loop.create_future()
            self._inflight_bytes += size
            try:
                self._producer.produce(
                    self._topic,
                    value=value,
                    key=key,
                    headers=headers,
                    on_delivery=partial(self._on_delivery, future, size),
                )
            except BufferError as exc:
                self._inflight_bytes -= size
                raise ProducerBusy(f"local producer queue full: {exc}") from exc
            except KafkaException as exc:
                self._inflight_bytes -= size
                raise DeliveryFailed(f"produce to {self._topic}: {exc}") from exc
            futures.append(future)

        try:
            errors = await asyncio.wait_for(asyncio.gather(*futures), self._timeout_s)
        except TimeoutError as exc:
            raise DeliveryFailed(
                f"{self._topic} did not confirm within {self._timeout_s}s"
            ) from exc
        failed = [error for error in errors if error is not None]
        if failed:
            raise DeliveryFailed(
                f"{len(failed)} of {len(errors)} messages to {self._topic} failed: "
                f"{failed[0].str()}"
            )

    def dead_letter(self, rejection: Rejection, headers: Headers) -> None:
        """Produce a rejected part to the DLQ without waiting; failures are logged."""
        dlq_headers = [
            *headers,
            (HEADER_DLQ_REASON, rejection.reason.encode()),
            (HEADER_DLQ_DETAIL, rejection.detail[:_DLQ_DETAIL_CHARS].encode()),
            (HEADER_DLQ_CONTENT_TYPE, rejection.content_type.encode()),
        ]
        try:
            self._producer.produce(
                self._dlq_topic,
                value=rejection.payload,
                headers=dlq_headers,
                on_delivery=self._on_dead_letter,
            )
        except (BufferError, KafkaException) as exc:
            self._metrics.dlq_failed += 1
            log.warning(
                "dropped %d %s span(s) bound for %s: %s",
                rejection.spans,
                rejection.reason,
                self._dlq_topic,
                exc,
            )

    async def close(self, timeout_s: float) -> None:
        """Stop the poll thread, then wait for outstanding messages."""
        self._stopping.set()
        if self._poller.is_alive():
            await asyncio.to_thread(self._poller.join)
        remaining = await asyncio.to_thread(self._producer.flush, timeout_s)
        if remaining:
            log.warning("%d message(s) were not confirmed before shutdown", remaining)

    def _require_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("SpanProducer.start() was not called")
        return self._loop

    def _poll_forever(self) -> None:
        while not self._stopping.is_set():
            self._producer.poll(_POLL_INTERVAL_S)

    def _on_delivery(
        self,
        future: asyncio.Future[KafkaError | None],
        size: int,
        error: KafkaError | None,
        _message: Message,
    ) -> None:
        # Runs on the poll thread (or the flushing thread at shutdown).
        loop = self._require_loop()
        try:
            loop.call_soon_threadsafe(self._settle, future, size, error)
        except RuntimeError:
            log.debug("event loop closed before a delivery report arrived")

    def _settle(
        self,
        future: asyncio.Future[KafkaError | None],
        size: int,
        error: KafkaError | None,
    ) -> None:
        self._inflight_bytes -= size
        if error is None:
            self._brokers_down = False
        if not future.done():
            future.set_result(error)

    def _on_dead_letter(self, error: KafkaError | None, _message: Message) -> None:
        # Runs on the poll thread; counters belong to the event loop.
        loop = self._require_loop()
        try:
            loop.call_soon_threadsafe(self._count_dead_letter, error)
        except RuntimeError:
            log.debug("event loop closed before a dead-letter report arrived")

    def _count_dead_letter(self, error: KafkaError | None) -> None:
        if error is None:
            self._brokers_down = False
            self._metrics.dlq_messages += 1
            return
        self._metrics.dlq_failed += 1
        log.warning("dead letter to %s failed: %s", self._dlq_topic, error.str())

    def _on_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._ALL_BROKERS_DOWN:
            self._brokers_down = True
        # librdkafka repeats transport errors every few seconds while a broker
        # is away; one line per error code per interval is enough.
        now = time.monotonic()
        last = self._last_error_log.get(error.code(), 0.0)
        if now - last < _ERROR_LOG_INTERVAL_S:
            return
        self._last_error_log[error.code()] = now
        log.warning("kafka: %s", error.str())
