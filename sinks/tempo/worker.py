"""The Tempo sink worker: SpanBatch records exported as OTLP/HTTP per tenant.

Each batch of records becomes one request per tenant (the tenant travels in
``X-Scope-OrgID``), all sent at once. Offsets are committed only after the
backend accepted every request of the batch. What retrying can never fix
costs only its own records, which go to the DLQ with the reason: a tenant
that cannot be sent as a header, a request the backend refuses for good (a
413 is first split into smaller requests). A backend still away at the retry
deadline holds the batch (``BackendUnavailable``): the loop hands it back
after a back-off and only the spans not yet accepted are sent again.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Message, TopicPartition

import schemas
from llmobs.errors import RetriableStageError, SchemaError
from llmobs.retry import Backoff, ShutdownRequested
from llmobs.settings import describe
from sinks.consumer import (
    HOLD_BACKOFF,
    BackendUnavailable,
    BatchConsumer,
    Item,
    LoopSettings,
    Position,
)
from sinks.handlers import WriteThrough
from sinks.tempo.exporter import (
    TOO_LARGE,
    ExportInvalid,
    ExportRejected,
    OtlpHttpExporter,
)
from sinks.tempo.otlp import RequestBuilder
from sinks.tempo.settings import TempoSettings

log = logging.getLogger(__name__)

HEADER_HTTP_STATUS = "llmobs.dlq.http_status"
# Visible ASCII, inner spaces allowed: anything else is refused by the HTTP
# client (CR, LF, NUL), trimmed by servers (outer spaces) or sent in an
# encoding the backend may read otherwise (non-ASCII).
_HEADER_VALUE = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")
# Kafka position of a record: (topic, partition, offset)
RecordKey = tuple[str, int, int]


@dataclass
class Part:
    """Some spans (by index) of one record, to be sent in one request."""

    item: Item
    indexes: list[int]


class TempoHandler(WriteThrough):
    """Decodes SpanBatch records and exports them, one request per tenant."""

    def __init__(self, settings: TempoSettings) -> None:
        self.settings = settings
        self.exported_spans = 0
        self.requests = 0
        self.rejected_spans = 0
        self.split_requests = 0
        self._codec = schemas.codec(schemas.SPAN_BATCH)
        self.exporter = OtlpHttpExporter(
            settings.traces_url,
            tenant_header=settings.tenant_header,
            auth_token=settings.auth_token,
            compression=settings.compression,
            timeout_s=settings.request_timeout_s,
            backoff=Backoff(deadline_s=settings.retry_deadline_s),
        )
        # Spans the backend accepted, per record of a batch being held.
        self._accepted: dict[RecordKey, set[int]] = {}

    def counters(self) -> list[tuple[str, str, float]]:
        return [
            (
                "spans_exported",
                "Spans the trace backend accepted.",
                self.exported_spans,
            ),
            (
                "spans_rejected",
                "Spans the trace backend rejected in a partial success.",
                self.rejected_spans,
            ),
            (
                "export_requests",
                "OTLP export requests the backend accepted.",
                self.requests,
            ),
        ]

    def decode(self, message: Message) -> Item:
        try:
            record = self._codec.decode(message.value() or b"")
        except SchemaError as exc:
            item = Item(message)
            item.kill("schema_error", str(exc))
            return item
        return Item(message, record, size=len(record["spans"]))

    async def write(
        self, items: list[Item], stop: asyncio.Event
    ) -> list[TopicPartition] | None:
        give_up_at_s = time.monotonic() + self.settings.retry_deadline_s
        groups = self._pending(items)
        # Every request runs to its end before the batch is judged, so none
        # is cut off (or left sending on a closed session) by another's error.
        results = await asyncio.gather(
            *(self._send(t, parts, give_up_at_s, stop) for t, parts in groups),
            return_exceptions=True,
        )

        failures = [r for r in results if isinstance(r, BaseException)]
        for failure in failures:
            if not isinstance(failure, (RetriableStageError, ShutdownRequested)):
                raise failure
        for failure in failures:
            if isinstance(failure, ShutdownRequested):
                raise failure
        if failures:
            raise BackendUnavailable(
                f"{len(failures)} of {len(groups)} requests not accepted: {failures[0]}"
            ) from failures[0]
        self._accepted.clear()
        return None

    def revoke(self, positions: set[Position]) -> None:
        for key in [k for k in self._accepted if k[:2] in positions]:
            del self._accepted[key]

    def _pending(self, items: list[Item]) -> list[tuple[str, list[Part]]]:
        """The spans still to send, per tenant; unsendable tenants are killed."""
        by_tenant: dict[str, list[Part]] = defaultdict(list)
        for item in items:
            if item.dead or not item.payload["spans"]:
                continue
            tenant = item.payload["tenant"]
            if self.settings.tenant_header and not _HEADER_VALUE.fullmatch(tenant):
                item.kill(
                    "invalid_tenant",
                    f"tenant {tenant!r} cannot be sent in "
                    f"{self.settings.tenant_header}",
                )
                continue
            done = self._accepted.get(_key(item), set())
            left = [i for i in range(len(item.payload["spans"])) if i not in done]
            if left:
                by_tenant[tenant].append(Part(item, left))
        return list(by_tenant.items())

    async def _send(
        self, tenant: str, parts: list[Part], give_up_at_s: float, stop: asyncio.Event
    ) -> None:
        """Export ``parts`` as one request; split it while the backend says 413."""
        builder = RequestBuilder()
        for part in parts:
            try:
                builder.add(part.item.payload, part.indexes)
            except (IndexError, KeyError, TypeError, ImportError) as exc:
                part.item.kill("invalid_record", f"{type(exc).__name__}: {exc}")
        live = [part for part in parts if not part.item.dead]
        if not live:
            return

        try:
            result = await self.exporter.export(
                builder.build(), tenant, stop, give_up_at_s
            )
        except ExportRejected as exc:
            halves = _halves(live)
            if exc.status == TOO_LARGE and halves:
                self.split_requests += 1
                log.info(
                    "backend found %d spans of tenant %s too large; splitting",
                    builder.spans,
                    tenant,
                )
                for half in halves:
                    await self._send(tenant, half, give_up_at_s, stop)
                return
            self._kill(live, "rejected_by_backend", exc.body, str(exc.status))
            log.warning(
                "backend refused %d spans of tenant %s with HTTP %d",
                builder.spans,
                tenant,
                exc.status,
            )
            return
        except ExportInvalid as exc:
            self._kill(live, "unsendable_request", str(exc))
            return

        for part in live:
            self._accepted.setdefault(_key(part.item), set()).update(part.indexes)
        self.requests += 1
        self.exported_spans += builder.spans
        if result.rejected_spans:
            self.rejected_spans += result.rejected_spans
            log.warning(
                "backend dropped %d of %d spans of tenant %s: %s",
                result.rejected_spans,
                builder.spans,
                tenant,
                result.error_message,
            )
        log.debug("exported %d spans of tenant %s", builder.spans, tenant)

    @staticmethod
    def _kill(parts: list[Part], reason: str, detail: str, status: str = "") -> None:
        headers = {HEADER_HTTP_STATUS: status} if status else {}
        for part in parts:
            part.item.kill(reason, detail, **headers)


def _key(item: Item) -> RecordKey:
    return (*item.position, item.offset)


def _halves(parts: list[Part]) -> list[list[Part]]:
    """``parts`` cut in two: by records, else one record's spans; [] if one span."""
    if len(parts) > 1:
        middle = len(parts) // 2
        return [parts[:middle], parts[middle:]]
    indexes = parts[0].indexes
    if len(indexes) < 2:
        return []
    middle = len(indexes) // 2
    item = parts[0].item
    return [[Part(item, indexes[:middle])], [Part(item, indexes[middle:])]]


def max_poll_interval_s(settings: TempoSettings) -> float:
    """Longer than one write of a held batch plus the back-off before it."""
    write_s = settings.retry_deadline_s + settings.request_timeout_s
    return max(300.0, write_s + HOLD_BACKOFF.max_s + 60.0)


class TempoSink:
    """Runs the Tempo handler over the sampled-spans topic."""

    def __init__(self, settings: TempoSettings) -> None:
        self.settings = settings
        self.handler = TempoHandler(settings)
        self.loop = BatchConsumer(
            "tempo sink",
            LoopSettings(
                kafka_bootstrap=settings.kafka_bootstrap,
                topic=settings.sampled_topic,
                group_id=settings.group_id,
                dlq_topic=settings.dlq_topic,
                max_batch_size=settings.max_batch_spans,
                flush_interval_s=settings.flush_interval_s,
                max_idle_s=settings.max_idle_s,
                max_poll_interval_s=max_poll_interval_s(settings),
                metrics_address=settings.metrics_address,
            ),
            self.handler,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Export until ``stop`` is set (or the topic stays idle), then close."""
        log.info("tempo sink starting: %s", describe(self.settings))
        try:
            await self.loop.run(stop)
        finally:
            await self.handler.exporter.close()
        h = self.handler
        log.info(
            "tempo sink stopped: %d spans in %d requests, %d dropped by the "
            "backend, %d records dead-lettered",
            h.exported_spans,
            h.requests,
            h.rejected_spans,
            self.loop.dead_lettered,
        )


def stats(sink: TempoSink) -> dict[str, Any]:
    """Counters for tests and the benchmark."""
    return {
        "exported_spans": sink.handler.exported_spans,
        "requests": sink.handler.requests,
        "rejected_spans": sink.handler.rejected_spans,
        "split_requests": sink.handler.split_requests,
        "dead_lettered": sink.loop.dead_lettered,
    }
